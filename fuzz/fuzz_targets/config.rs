//! The config parser and validator must never panic, and what they accept must be
//! within the documented ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match vigil::config::parse(text, "fuzz.toml") {
        Ok(config) => {
            for (name, i) in &config.instances {
                assert!(i.vrid >= 1);
                assert!(i.priority >= 1);
                assert!((1..=100).contains(&i.down_timer_adverts));
                assert!(!i.virtual_addresses.is_empty());
                assert!(i.virtual_addresses.iter().all(|a| a.family() == i.family()));
                if i.version == vigil::config::Version::V2 {
                    assert_eq!(i.advert_interval.subsec_nanos(), 0);
                } else {
                    assert_eq!(i.advert_interval.as_nanos() % 10_000_000, 0);
                }
                let _ = i.summary(name);
                // Every address prints as something the parser takes back unchanged.
                for a in &i.virtual_addresses {
                    let back: vigil::config::VirtualAddress = a.to_string().parse().unwrap();
                    assert_eq!(&back, a);
                }
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            let _ = e.to_string();
        }
    }
});

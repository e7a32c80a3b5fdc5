//! The keepalived importer must never panic, and its output must always be TOML (even
//! when `vigil check` would reject the values in it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(import) = vigil::keepalived::import_str(text, "fuzz.conf") else {
        return;
    };
    if let Err(e) = toml::from_str::<toml::Table>(&import.toml) {
        panic!("importer wrote invalid TOML: {e}\n{}", import.toml);
    }
    for w in &import.warnings {
        let _ = w.to_string();
    }
});

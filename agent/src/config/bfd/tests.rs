use std::time::Duration;

use crate::config::{BfdTimers, TrackBfd, parse};

const BASE: &str = r#"
[global]
bfd = { interval = "50ms" }

[bfd.to_lb02]
neighbor = "192.0.2.12"
interface = "eth0"
interval = "10ms"
multiplier = 5
weight = -20

[instances.a]
interface = "eth0"
vrid = 1
virtual_addresses = ["192.0.2.100"]
track_bfd = ["to_lb02", { bfd = "to_lb02", weight = 0 }]

[instances.b]
interface = "eth0"
vrid = 2
virtual_addresses = ["192.0.2.101"]
bfd = { interval = "10ms", multiplier = 3 }
"#;

#[test]
fn timers_sessions_and_tracking() {
    // The same session twice is refused; once is fine.
    let text = BASE.replace(
        r#""to_lb02", { bfd = "to_lb02", weight = 0 }"#,
        r#"{ bfd = "to_lb02", weight = 0 }"#,
    );
    let c = parse(&text, "t").unwrap();
    assert_eq!(
        c.global.bfd,
        Some(BfdTimers {
            interval: Duration::from_millis(50),
            multiplier: 3
        })
    );
    // An instance without its own `bfd` takes the global default.
    assert_eq!(c.instances["a"].bfd, c.global.bfd);
    assert_eq!(
        c.instances["b"].bfd,
        Some(BfdTimers {
            interval: Duration::from_millis(10),
            multiplier: 3
        })
    );
    let s = &c.bfd["to_lb02"];
    assert_eq!(
        s.neighbor,
        "192.0.2.12".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(s.timers.interval, Duration::from_millis(10));
    assert_eq!(s.timers.multiplier, 5);
    assert_eq!(s.weight, -20);
    assert_eq!(
        c.instances["a"].track_bfd,
        vec![TrackBfd {
            session: "to_lb02".into(),
            weight: 0
        }]
    );
    // Without an override, the session's weight.
    let text = BASE.replace(r#", { bfd = "to_lb02", weight = 0 }"#, "");
    let c = parse(&text, "t").unwrap();
    assert_eq!(c.instances["a"].track_bfd[0].weight, -20);
}

#[test]
fn no_bfd_unless_asked() {
    let c = parse(
        "[instances.a]\ninterface = \"eth0\"\nvrid = 1\nvirtual_addresses = [\"192.0.2.1\"]\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.instances["a"].bfd, None);
    assert!(c.bfd.is_empty());
}

#[test]
fn errors_are_collected_with_their_paths() {
    let text = BASE
        .replace(
            r#"interval = "10ms"
multiplier = 5"#,
            r#"interval = "0ms"
multiplier = 0"#,
        )
        .replace(
            r#"{ interval = "10ms", multiplier = 3 }"#,
            r#"{ interval = "2min" }"#,
        )
        .replace(r#"neighbor = "192.0.2.12""#, r#"neighbor = "224.0.0.18""#)
        .replace(r#"{ bfd = "to_lb02", weight = 0 }"#, r#"{ bfd = "nope" }"#);
    let err = parse(&text, "t").unwrap_err().to_string();
    for expected in [
        "bfd.to_lb02.neighbor: 224.0.0.18 is not a unicast address",
        "bfd.to_lb02.interval: 0s is out of range",
        "bfd.to_lb02.multiplier: 0 is out of range",
        "instances.b.bfd.interval: 2m is out of range",
        "instances.a.track_bfd[1]: no BFD session `nope` in [bfd]",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let err = parse(
        &BASE.replace("multiplier = 5", "multiplier = 5\nfoo = 1"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown key"), "{err}");
}

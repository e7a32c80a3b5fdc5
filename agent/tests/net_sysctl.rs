//! `ip_nonlocal_bind` round trips inside a namespace (the sysctl is per netns), leaving the
//! host's value alone.

mod netns;

use netns::{IF_A, Lab, LabOptions};
use vigil::net::{Family, ipv6_forwarding, nonlocal_bind, set_nonlocal_bind};

fn sysctl_in(lab: &Lab, key: &str) -> String {
    let out = lab.exec(&lab.a, "sysctl", &["-n", key]);
    assert!(out.status.success(), "sysctl {key} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn nonlocal_bind_round_trip_in_namespace() {
    require_root!();
    let lab = Lab::new("sc", LabOptions { dad: false });
    let host_before = (
        nonlocal_bind(Family::Ipv4).expect("host ipv4 readable"),
        nonlocal_bind(Family::Ipv6).expect("host ipv6 readable"),
    );
    for (family, key) in [
        (Family::Ipv4, "net.ipv4.ip_nonlocal_bind"),
        (Family::Ipv6, "net.ipv6.ip_nonlocal_bind"),
    ] {
        let (initial, previous_on, now_on) = netns::in_netns(&lab.a, move || {
            let initial = nonlocal_bind(family).expect("read");
            let previous = set_nonlocal_bind(family, true).expect("set on");
            (initial, previous, nonlocal_bind(family).expect("read"))
        });
        assert!(!initial, "{key} starts at 0 in a new namespace");
        assert!(!previous_on, "set returns the previous value");
        assert!(now_on);
        assert_eq!(sysctl_in(&lab, key), "1", "the namespace sees the write");

        let (previous_off, again) = netns::in_netns(&lab.a, move || {
            let previous = set_nonlocal_bind(family, false).expect("set off");
            (
                previous,
                set_nonlocal_bind(family, false).expect("set off again"),
            )
        });
        assert!(previous_off);
        assert!(!again, "setting the current value reports it unchanged");
        assert_eq!(sysctl_in(&lab, key), "0");
    }
    let host_after = (
        nonlocal_bind(Family::Ipv4).expect("host ipv4 readable"),
        nonlocal_bind(Family::Ipv6).expect("host ipv6 readable"),
    );
    assert_eq!(
        host_before, host_after,
        "the host namespace was not touched"
    );
}

#[test]
fn ipv6_forwarding_reads_per_interface() {
    require_root!();
    let lab = Lab::new("fw", LabOptions { dad: false });
    assert!(!netns::in_netns(&lab.a, || ipv6_forwarding(IF_A).expect("read")));
    let key = format!("net.ipv6.conf.{IF_A}.forwarding=1");
    assert!(lab.exec(&lab.a, "sysctl", &["-qw", &key]).status.success());
    assert!(netns::in_netns(&lab.a, || ipv6_forwarding(IF_A).expect("read")));
    assert!(netns::in_netns(&lab.a, || ipv6_forwarding("../x").is_err()));
}

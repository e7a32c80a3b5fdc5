use crate::config;
use crate::keepalived::import_str;

const CONF: &str = "bfd_instance to_lb02 {
  neighbor_ip 192.0.2.12
  source_ip 192.0.2.11
  min_rx 20
  min_tx 10.5
  multiplier 3
  idle_tx 1000
  weight -20
}
vrrp_instance A {
  interface eth0
  virtual_router_id 9
  virtual_ipaddress {
    192.0.2.9/24
  }
  track_bfd {
    to_lb02
  }
}
";

#[test]
fn bfd_instance_and_track_bfd_carry_over_with_warnings_where_they_differ() {
    let i = import_str(CONF, "k.conf").expect("imports");
    assert!(i.check.is_none(), "{:?}\n{}", i.check, i.toml);
    let c = config::parse(&i.toml, "out").expect("valid");
    let s = &c.bfd["to_lb02"];
    assert_eq!(s.neighbor.to_string(), "192.0.2.12");
    assert_eq!(
        s.source.map(|a| a.to_string()).as_deref(),
        Some("192.0.2.11")
    );
    assert_eq!(s.interface, "eth0");
    // One interval for both directions: the slower of the two.
    assert_eq!(s.timers.interval, std::time::Duration::from_millis(20));
    assert_eq!(s.timers.multiplier, 3);
    assert_eq!(s.weight, -20);
    assert_eq!(c.instances["A"].track_bfd[0].session, "to_lb02");
    assert_eq!(c.instances["A"].track_bfd[0].weight, -20);
    let said = |kw: &str, needle: &str| {
        i.warnings
            .iter()
            .any(|w| w.keyword == kw && w.message.contains(needle))
    };
    assert!(said("bfd_instance", "one interval for both directions"));
    assert!(said("bfd_instance", "gets eth0"));
    assert!(said("idle_tx", "once a second"));
}

#[test]
fn keepalived_defaults_are_written_out() {
    let conf = CONF
        .replace("  min_rx 20\n  min_tx 10.5\n  multiplier 3\n", "")
        .replace("neighbor_ip", "neighbour_ip");
    let i = import_str(&conf, "k.conf").expect("imports");
    let c = config::parse(&i.toml, "out").expect("valid");
    let s = &c.bfd["to_lb02"];
    assert_eq!(s.timers.interval, std::time::Duration::from_millis(10));
    assert_eq!(s.timers.multiplier, 5, "keepalived's default multiplier");
}

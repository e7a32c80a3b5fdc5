//! Unit tests of keepalived's own rules the importer must reproduce: derived priorities,
//! settings keepalived clears, whole-second keywords, duplicates and strict mode. Each
//! case is what keepalived 2.2 does with the same lines.

use super::*;

fn import(text: &str) -> Import {
    import_str(text, "k.conf").unwrap()
}

fn warned(i: &Import, keyword: &str, needle: &str) -> bool {
    i.warnings
        .iter()
        .any(|w| w.keyword == keyword && w.message.contains(needle))
}

/// An instance with `extra` lines; the result must pass `vigil check`.
fn instance(extra: &str) -> (Import, config::Instance) {
    instance_with("", extra)
}

fn instance_with(before: &str, extra: &str) -> (Import, config::Instance) {
    let i = import(&format!(
        "{before}vrrp_instance A {{\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {{\n  192.0.2.9/24\n }}\n{extra}}}\n"
    ));
    let c = config::parse(&i.toml, "out").unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    let a = c.instances["A"].clone();
    (i, a)
}

#[test]
fn state_master_without_priority_is_the_address_owner() {
    let (i, a) = instance(" state MASTER\n");
    assert_eq!(a.priority, 255, "{}", i.toml);
    assert!(warned(&i, "priority", "255"), "{:?}", i.warnings);
    let (_, a) = instance(" state BACKUP\n");
    assert_eq!(a.priority, 100);
    let (_, a) = instance("");
    assert_eq!(a.priority, 100);
    let (_, a) = instance(" state MASTER\n priority 150\n");
    assert_eq!(a.priority, 150);
}

#[test]
fn state_is_matched_in_upper_case_only() {
    // keepalived: an unknown state (`master` is one) means BACKUP; and a BACKUP after a
    // MASTER is ignored.
    let (i, a) = instance(" state master\n priority 150\n");
    assert_eq!(a.initial_state, config::InitialState::Backup, "{}", i.toml);
    assert!(warned(&i, "state", "upper case"), "{:?}", i.warnings);
    let (i, a) = instance(" state MASTER\n state BACKUP\n priority 150\n");
    assert_eq!(a.initial_state, config::InitialState::Master, "{}", i.toml);
    assert!(warned(&i, "state", "MASTER"), "{:?}", i.warnings);
}

#[test]
fn an_invalid_priority_is_keepalived_default() {
    for p in ["0", "256", "-5", "high"] {
        let (i, a) = instance(&format!(" state MASTER\n priority {p}\n"));
        assert_eq!(a.priority, 100, "priority {p}: {}", i.toml);
        assert!(warned(&i, "priority", "100"), "{p}: {:?}", i.warnings);
    }
}

#[test]
fn nopreempt_and_preempt_delay_are_cleared_where_keepalived_clears_them() {
    let (i, a) = instance(" state MASTER\n priority 150\n nopreempt\n preempt_delay 5\n");
    assert!(a.preempt, "{}", i.toml);
    assert_eq!(a.preempt_delay, Duration::ZERO, "{}", i.toml);
    assert!(warned(&i, "nopreempt", "MASTER"), "{:?}", i.warnings);
    assert!(warned(&i, "preempt_delay", "MASTER"), "{:?}", i.warnings);

    let (i, a) = instance(" priority 255\n nopreempt\n");
    assert!(a.preempt, "{}", i.toml);
    assert!(warned(&i, "nopreempt", "255"), "{:?}", i.warnings);

    let (i, a) = instance(" state BACKUP\n nopreempt\n preempt_delay 5\n");
    assert!(!a.preempt);
    assert_eq!(a.preempt_delay, Duration::ZERO, "{}", i.toml);
    assert!(warned(&i, "preempt_delay", "nopreempt"), "{:?}", i.warnings);

    // The usual shape is carried as it is.
    let (i, a) = instance(" state BACKUP\n preempt_delay 5\n");
    assert!(a.preempt);
    assert_eq!(a.preempt_delay, Duration::from_secs(5));
    assert!(
        !i.warnings.iter().any(|w| w.keyword == "preempt_delay"),
        "{:?}",
        i.warnings
    );
    let (_, a) = instance(" state BACKUP\n nopreempt\n");
    assert!(!a.preempt);
}

#[test]
fn whole_second_keywords_are_truncated_as_keepalived_reads_them() {
    let i = import(
        "vrrp_script chk {\n script /bin/true\n interval 2.5\n timeout 0.5\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 192.0.2.9/24\n }\n\
         garp_master_delay 0.5\n garp_master_refresh 1.9\n}\n",
    );
    let c = config::parse(&i.toml, "out").unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    assert_eq!(
        c.scripts["chk"].interval,
        Duration::from_secs(2),
        "{}",
        i.toml
    );
    // 0 is read, then raised to 1 s.
    assert_eq!(
        c.scripts["chk"].timeout,
        Duration::from_secs(1),
        "{}",
        i.toml
    );
    let a = &c.instances["A"];
    assert_eq!(a.garp.master_delay, Duration::ZERO, "{}", i.toml);
    assert_eq!(a.garp.master_refresh, Some(Duration::from_secs(1)));
    for kw in [
        "interval",
        "timeout",
        "garp_master_delay",
        "garp_master_refresh",
    ] {
        assert!(warned(&i, kw, "whole seconds"), "{kw}: {:?}", i.warnings);
    }
}

#[test]
fn duplicate_addresses_and_peers_are_ignored_like_keepalived() {
    let (i, a) = instance(
        " virtual_ipaddress {\n 192.0.2.10\n 192.0.2.9 label eth0:1\n }\n\
         virtual_ipaddress_excluded {\n 192.0.2.10/32\n 192.0.2.11\n }\n\
         unicast_peer {\n 192.0.2.2\n 192.0.2.2\n 192.0.2.3\n }\n",
    );
    assert!(i.check.is_none(), "{:?}\n{}", i.check, i.toml);
    assert_eq!(a.virtual_addresses.len(), 2, "{}", i.toml);
    assert_eq!(a.virtual_addresses[0].label, None);
    assert_eq!(a.excluded_addresses.len(), 1, "{}", i.toml);
    assert_eq!(a.unicast_peers.len(), 2, "{}", i.toml);
    assert!(
        warned(&i, "virtual_ipaddress", "192.0.2.9"),
        "{:?}",
        i.warnings
    );
    assert!(
        warned(&i, "virtual_ipaddress_excluded", "192.0.2.10"),
        "{:?}",
        i.warnings
    );
    assert!(warned(&i, "unicast_peer", "192.0.2.2"), "{:?}", i.warnings);
}

#[test]
fn strict_mode_as_keepalived_applies_it() {
    let strict = "global_defs {\n vrrp_strict\n}\n";
    let (i, a) = instance_with(
        strict,
        " state MASTER\n priority 150\n preempt_delay 3\n down_timer_adverts 5\n\
         authentication {\n auth_type PASS\n auth_pass secret\n }\n",
    );
    assert!(!a.accept, "{}", i.toml);
    assert_eq!(a.auth_pass, None, "{}", i.toml);
    assert_eq!(a.initial_state, config::InitialState::Backup, "{}", i.toml);
    assert_eq!(a.preempt_delay, Duration::ZERO);
    assert_eq!(a.down_timer_adverts, 3);
    assert_eq!(a.garp.lower_prio_repeat, 0);
    assert_eq!(a.garp.lower_prio_delay, Duration::ZERO);
    for kw in ["auth_pass", "state", "preempt_delay", "down_timer_adverts"] {
        assert!(warned(&i, kw, "strict"), "{kw}: {:?}", i.warnings);
    }
    // The address owner keeps accept mode, in strict mode too.
    let (i, a) = instance_with(strict, " priority 255\n");
    assert!(a.accept, "{}", i.toml);
    // `strict_mode` on one instance does the same for that instance.
    let (i, a) = instance(" strict_mode\n");
    assert!(!a.accept, "{}", i.toml);
    let (_, a) = instance(" strict_mode off\n");
    assert!(a.accept);
}

#[test]
fn unicast_addresses_lose_a_prefix_as_in_keepalived() {
    let (i, a) = instance(" unicast_src_ip 192.0.2.1/24\n unicast_peer {\n  192.0.2.2/24\n }\n");
    assert_eq!(
        a.unicast_src_ip,
        Some("192.0.2.1".parse().unwrap()),
        "{}",
        i.toml
    );
    assert_eq!(
        a.unicast_peers,
        vec!["192.0.2.2".parse::<IpAddr>().unwrap()]
    );
    assert!(warned(&i, "unicast_src_ip", "/24"), "{:?}", i.warnings);
    assert!(warned(&i, "unicast_peer", "/24"), "{:?}", i.warnings);
}

#[test]
fn checks_that_need_a_shell_are_warned() {
    let i = import(
        "vrrp_script port {\n script \"</dev/tcp/127.0.0.1/80\"\n}\n\
         vrrp_script piped {\n script \"pidof haproxy || exit 1\"\n}\n\
         vrrp_script plain {\n script \"killall -0 haproxy\"\n}\n",
    );
    let on = |line: usize| {
        i.warnings
            .iter()
            .filter(|w| w.keyword == "script" && w.line == line)
            .map(|w| w.message.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        on(2).iter().any(|m| m.contains("disables")),
        "{:?}",
        i.warnings
    );
    assert!(
        on(5).iter().any(|m| m.contains("arguments")),
        "{:?}",
        i.warnings
    );
    assert!(on(8).is_empty(), "{:?}", i.warnings);
}

#[test]
fn the_address_owner_drops_weighted_tracking_as_keepalived_does() {
    let i = import(
        "vrrp_script w {\n script /bin/true\n weight -20\n}\n\
         vrrp_script f {\n script /bin/true\n}\n\
         track_file tf {\n file /run/x\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 9\n state MASTER\n\
         virtual_ipaddress {\n 192.0.2.9/24\n }\n\
         track_script {\n w\n f\n f weight 5\n }\n\
         track_interface {\n eth1\n eth2 weight -10\n }\n\
         track_file {\n tf\n }\n}\n",
    );
    let c = config::parse(&i.toml, "out").unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    let a = &c.instances["A"];
    assert_eq!(a.priority, 255);
    let scripts: Vec<(&str, i32)> = a
        .track_scripts
        .iter()
        .map(|t| (t.script.as_str(), t.weight))
        .collect();
    assert_eq!(scripts, vec![("f", 0)], "{}", i.toml);
    assert_eq!(a.track_interfaces.len(), 1, "{}", i.toml);
    assert_eq!(a.track_interfaces[0].weight, 0);
    assert_eq!(a.track_files.len(), 1, "{}", i.toml);
    assert_eq!(a.track_files[0].weight, 0, "{}", i.toml);
    assert!(
        warned(&i, "track_script", "`w` (weight -20)"),
        "{:?}",
        i.warnings
    );
    assert!(warned(&i, "track_interface", "eth2"), "{:?}", i.warnings);
    // Below 255 nothing is dropped.
    let i = import(
        "vrrp_script w {\n script /bin/true\n weight -20\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 9\n priority 254\n\
         virtual_ipaddress {\n 192.0.2.9/24\n }\n track_script {\n w\n }\n}\n",
    );
    let c = config::parse(&i.toml, "out").unwrap();
    assert_eq!(c.instances["A"].track_scripts.len(), 1);
}

#[test]
fn a_section_inside_another_is_named() {
    let i = import(
        "global_defs {\n router_id a\nvrrp_instance A {\n interface eth0\n virtual_router_id 9\n}\n}\n",
    );
    assert!(
        warned(&i, "vrrp_instance", "inside global_defs"),
        "{:?}",
        i.warnings
    );
    assert!(!i.toml.contains("[instances"), "{}", i.toml);
}

#[test]
fn advert_int_outside_keepalived_range() {
    let (i, a) = instance(" version 3\n advert_int 100\n");
    assert_eq!(
        a.advert_interval,
        Duration::from_millis(40_950),
        "{}",
        i.toml
    );
    assert!(warned(&i, "advert_int", "40.95"), "{:?}", i.warnings);
    for v in ["300", "0.001"] {
        let (i, a) = instance(&format!(" version 3\n advert_int {v}\n"));
        assert_eq!(a.advert_interval, Duration::from_secs(1), "{v}: {}", i.toml);
        assert!(warned(&i, "advert_int", "ignores"), "{v}: {:?}", i.warnings);
    }
}

#[test]
fn a_track_script_without_its_script_is_ignored() {
    let (i, a) = instance(" track_script {\n  missing\n }\n");
    assert!(a.track_scripts.is_empty(), "{}", i.toml);
    assert!(warned(&i, "track_script", "`missing`"), "{:?}", i.warnings);
}

#[test]
fn the_address_owner_drops_a_session_weighted_by_its_bfd_instance() {
    let i = import(
        "bfd_instance b {\n neighbor_ip 192.0.2.2\n weight -30\n}\n\
         bfd_instance z {\n neighbor_ip 192.0.2.3\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 9\n priority 255\n\
         virtual_ipaddress {\n 192.0.2.9/24\n }\n track_bfd {\n b\n z\n }\n}\n",
    );
    assert!(warned(&i, "track_bfd", "`b`"), "{:?}", i.warnings);
    assert!(!warned(&i, "track_bfd", "`z`"), "{:?}", i.warnings);
    assert!(i.toml.contains("track_bfd = [\"z\"]"), "{}", i.toml);
}

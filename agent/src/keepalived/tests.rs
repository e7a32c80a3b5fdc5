//! Unit tests of the conversion; the keepalived pair's configs are golden files in
//! agent/tests/import_golden.rs.

use super::*;

fn import(text: &str) -> Import {
    import_str(text, "k.conf").unwrap()
}

fn warned(i: &Import, keyword: &str, needle: &str) -> bool {
    i.warnings
        .iter()
        .any(|w| w.keyword == keyword && w.message.contains(needle))
}

const BASE: &str = "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  192.0.2.9/24\n }\n";

#[test]
fn version_2_is_written_explicitly() {
    let i = import(&format!("{BASE}}}\n"));
    assert!(i.toml.contains("version = 2\n"), "{}", i.toml);
    assert!(i.check.is_none(), "{:?}", i.check);
    let c = config::parse(&i.toml, "out").unwrap();
    assert_eq!(c.instances["A"].version, config::Version::V2);
}

#[test]
fn global_vrrp_version_is_the_default() {
    let i = import(&format!("global_defs {{\n vrrp_version 3\n}}\n{BASE}}}\n"));
    assert!(i.toml.contains("version = 3\n"), "{}", i.toml);
}

#[test]
fn vrrp_rt_priority_is_the_realtime_priority() {
    let i = import(&format!(
        "global_defs {{\n vrrp_rt_priority 30\n}}\n{BASE}}}\n"
    ));
    assert!(i.toml.contains("realtime_priority = 30\n"), "{}", i.toml);
    assert!(i.check.is_none(), "{:?}", i.check);
    let c = config::parse(&i.toml, "out").unwrap();
    assert_eq!(c.global.realtime_priority, 30);
    let i = import(&format!(
        "global_defs {{\n vrrp_rt_priority 100\n}}\n{BASE}}}\n"
    ));
    assert!(!i.toml.contains("realtime_priority"), "{}", i.toml);
    assert!(warned(&i, "vrrp_rt_priority", "1 to 99"));
}

#[test]
fn ipv6_forces_v3() {
    let i = import(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n version 2\n virtual_ipaddress {\n  2001:db8::9/64\n }\n}\n",
    );
    assert!(i.toml.contains("version = 3\n"), "{}", i.toml);
    assert!(warned(&i, "version", "IPv6"));
    assert!(i.check.is_none(), "{:?}", i.check);
}

#[test]
fn long_passwords_are_truncated_like_keepalived() {
    let i = import(&format!(
        "{BASE} authentication {{\n auth_type PASS\n auth_pass 123456789\n }}\n}}\n"
    ));
    assert!(i.toml.contains("auth_pass = \"12345678\"\n"), "{}", i.toml);
    assert!(warned(&i, "auth_pass", "first 8 bytes"));
    assert!(i.check.is_none(), "{:?}", i.check);
}

#[test]
fn ah_and_v3_auth_are_not_carried() {
    let i = import(&format!(
        "{BASE} authentication {{\n auth_type AH\n auth_pass 1\n }}\n}}\n"
    ));
    assert!(!i.toml.contains("auth_pass"), "{}", i.toml);
    assert!(warned(&i, "auth_type", "not supported"));
    let i = import(&format!(
        "{BASE} version 3\n authentication {{\n auth_type PASS\n auth_pass 1\n }}\n}}\n"
    ));
    assert!(!i.toml.contains("auth_pass"), "{}", i.toml);
    assert!(warned(&i, "auth_pass", "VRRPv3"));
}

#[test]
fn tracks_and_notify() {
    let text = "vrrp_script chk {\n script \"/bin/check arg\"\n weight -20 reverse\n user nobody nogroup\n}\n\
track_file prio {\n file \"/run/prio\"\n weight 3 reverse\n init_file 0\n}\n\
vrrp_instance A {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 192.0.2.9/24 dev eth0 label eth0:9 scope global\n }\n\
 track_script {\n  chk weight 10\n }\n track_interface {\n  eth1\n  eth2 weight -5\n }\n track_file {\n  prio\n  missing\n }\n\
 notify_master \"/bin/n master\" root\n notify /bin/n\n unicast_src_ip 192.0.2.1\n unicast_peer {\n 192.0.2.2 min_ttl 1\n 192.0.2.3\n }\n nopreempt\n no_accept\n\
 old_unicast_checksum\n version 3\n garp_master_refresh 60\n}\n";
    let i = import(text);
    let c = config::parse(&i.toml, "out").unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    let a = &c.instances["A"];
    assert_eq!(a.track_scripts[0].weight, 10);
    assert_eq!(c.scripts["chk"].weight, -20);
    assert_eq!(c.scripts["chk"].command, "/bin/check arg");
    assert_eq!(a.track_interfaces.len(), 2);
    assert_eq!(a.track_interfaces[1].weight, -5);
    assert_eq!(a.track_files.len(), 1);
    assert_eq!(a.track_files[0].weight, 3);
    assert_eq!(a.notify_master.as_deref(), Some("/bin/n master"));
    assert_eq!(a.notify.as_deref(), Some("/bin/n"));
    assert_eq!(a.unicast_peers.len(), 2);
    assert!(!a.preempt);
    assert!(!a.accept);
    assert!(a.v3_checksum_as_v2);
    assert_eq!(a.garp.master_refresh, Some(Duration::from_secs(60)));
    assert_eq!(a.virtual_addresses[0].label.as_deref(), Some("eth0:9"));
    for (kw, needle) in [
        ("weight", "reverse"),
        ("user", "group"),
        ("init_file", "not carried"),
        ("virtual_ipaddress", "scope"),
        ("track_file", "missing"),
        ("notify_master", "root"),
        ("unicast_peer", "min_ttl"),
    ] {
        assert!(
            warned(&i, kw, needle),
            "no warning for {kw}/{needle}: {:#?}",
            i.warnings
        );
    }
}

#[test]
fn strict_mode_means_no_accept() {
    let i = import(&format!("global_defs {{\n vrrp_strict\n}}\n{BASE}}}\n"));
    assert!(i.toml.contains("accept = false"), "{}", i.toml);
    assert!(warned(&i, "vrrp_strict", "strict"));
}

#[test]
fn everything_unknown_is_warned_with_its_line() {
    let text = "global_defs {\n notification_email {\n a@b\n }\n lvs_id x\n}\nvirtual_server 10.0.0.1 80 {\n delay_loop 6\n}\n\
vrrp_sync_group G {\n group {\n A\n }\n}\n{ orphan }\nfoo bar\n";
    let i = import(text);
    let lines: Vec<(usize, &str)> = i
        .warnings
        .iter()
        .map(|w| (w.line, w.keyword.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, "notification_email"),
            (5, "lvs_id"),
            (7, "virtual_server"),
            (15, ""),
            (16, "foo"),
            // A group whose member does not exist: named, then left out as too small.
            (10, "vrrp_sync_group"),
            (10, "vrrp_sync_group"),
        ]
    );
    assert_eq!(
        i.warnings[0].to_string(),
        "k.conf:2: notification_email: e-mail alerts are not supported (use notify scripts); not carried over"
    );
}

#[test]
fn advert_int_rounding() {
    let i = import(&format!("{BASE} advert_int 1.5\n}}\n"));
    assert!(i.toml.contains("advert_interval = 2\n"), "{}", i.toml);
    assert!(warned(&i, "advert_int", "whole seconds"));
    let i = import(&format!("{BASE} version 3\n advert_int 0.01\n}}\n"));
    assert!(
        i.toml.contains("advert_interval = \"10ms\"\n"),
        "{}",
        i.toml
    );
    assert!(i.check.is_none(), "{:?}", i.check);
}

#[test]
fn bad_output_is_reported() {
    let i = import("vrrp_instance A {\n virtual_router_id 300\n}\n");
    assert!(i.check.is_some());
    assert!(warned(&i, "vrrp_instance", "no interface"));
}

#[test]
fn names_that_need_quoting() {
    let i = import(
        "vrrp_instance \"VI 1\" {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 192.0.2.9\n }\n}\n",
    );
    assert!(i.toml.contains("[instances.\"VI 1\"]"), "{}", i.toml);
    assert!(i.check.is_none(), "{:?}", i.check);
}

#[test]
fn param_match_initial_and_partial_keep_keepalived_matching() {
    let i = import(&format!(
        "vrrp_track_process init {{\n process haproxy -f /etc/haproxy.cfg\n param_match initial\n}}\n\
         vrrp_track_process part {{\n process haproxy -f /etc/haproxy.cfg\n param_match partial\n}}\n\
         {BASE} track_process {{\n  init\n  part\n }}\n}}\n"
    ));
    assert!(i.check.is_none(), "{:?}\n{}", i.check, i.toml);
    assert!(
        !i.warnings.iter().any(|w| w.keyword == "param_match"),
        "{:?}",
        i.warnings
    );
    let c = config::parse(&i.toml, "out").unwrap();
    let p = |comm: &str, cmdline: &str| crate::procwatch::ProcInfo {
        comm: comm.into(),
        cmdline: cmdline.into(),
    };
    // keepalived: initial compares the first arguments, partial finds them anywhere.
    let later = p("haproxy", "haproxy -f /etc/haproxy.cfg -D -p /run/h.pid");
    let earlier = p("haproxy", "haproxy -D -f /etc/haproxy.cfg");
    let other = p("haproxy", "haproxy -f /etc/other.cfg");
    let m = |name: &str, info: &crate::procwatch::ProcInfo| {
        crate::procwatch::matches(&c.processes[name], info)
    };
    assert!(m("init", &later) && !m("init", &earlier) && !m("init", &other));
    assert!(m("part", &later) && m("part", &earlier) && !m("part", &other));
}

#[test]
fn every_named_section_warns_a_missing_name_extra_words_and_a_second_definition() {
    let inst = |vrid: u8| {
        format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id {vrid}\n \
             virtual_ipaddress {{\n  192.0.2.{vrid}/24\n }}\n}}\n"
        )
    };
    let i = import(&format!(
        "vrrp_script chk {{\n script \"/bin/true\"\n}}\n\
         vrrp_script chk {{\n script \"/bin/false\"\n}}\n\
         vrrp_sync_group G extra {{\n group {{\n  VI_1\n }}\n}}\n\
         vrrp_sync_group G {{\n group {{\n  VI_1\n }}\n}}\n\
         bfd_instance {{\n neighbor_ip 192.0.2.9\n}}\n{}{}",
        inst(51),
        inst(52)
    ));
    assert!(
        warned(&i, "vrrp_script", "`chk` defined twice"),
        "{:?}",
        i.warnings
    );
    assert!(
        warned(&i, "vrrp_sync_group", "extra words `extra`"),
        "{:?}",
        i.warnings
    );
    assert!(
        warned(&i, "vrrp_sync_group", "`G` defined twice"),
        "{:?}",
        i.warnings
    );
    assert!(
        warned(&i, "bfd_instance", "without a name"),
        "{:?}",
        i.warnings
    );
    assert!(
        warned(&i, "vrrp_instance", "`VI_1` defined twice"),
        "{:?}",
        i.warnings
    );
    // The first definition wins, as in keepalived: VRID 51 is carried, 52 is not.
    assert!(i.toml.contains("vrid = 51"), "{}", i.toml);
    assert!(!i.toml.contains("vrid = 52"), "{}", i.toml);
}

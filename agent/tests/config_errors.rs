//! A table of broken configurations, each with the message it must produce
//! (`file:line:col: key.path: message`), and the CLI's behaviour on them.

use std::process::Command;

/// A valid instance; cases append to it or replace parts of it.
const OK: &str = r#"[instances.vi]
interface = "eth0"
vrid = 51
virtual_addresses = ["192.0.2.100/24"]
"#;

fn with(extra: &str) -> String {
    format!("{OK}{extra}\n")
}

/// (what is wrong, config text, expected diagnostics: each a substring of one line, in
/// order; the count must match too).
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        // --- structural: TOML syntax, unknown keys, types, missing keys (first one only)
        ("toml syntax", "[instances.vi\n".into(), vec!["t.toml:1:14: "]),
        ("unknown top-level table", "[instance.vi]\n".into(), vec![
            "t.toml:1:2: instance: unknown key `instance`, expected one of `global`, `scripts`, `instances`",
        ]),
        ("unknown instance key", with("prio = 5"), vec![
            "t.toml:5:1: instances.vi.prio: unknown key `prio`, expected one of `interface`, `vrid`, `priority`",
        ]),
        ("unknown global key", "[global]\nrouterid = \"x\"\n".into(), vec![
            "t.toml:2:1: global.routerid: unknown key `routerid`, expected one of `router_id`",
        ]),
        ("unknown script key", "[scripts.s]\ncommand = \"/bin/true\"\nintervall = 2\n".into(), vec![
            "t.toml:3:1: scripts.s.intervall: unknown key `intervall`",
        ]),
        ("missing interface", "[instances.vi]\nvrid = 1\nvirtual_addresses = [\"192.0.2.1\"]\n".into(), vec![
            "t.toml:1:1: instances.vi.interface: required key is missing",
        ]),
        ("missing command", "[scripts.s]\ninterval = 1\n".into(), vec![
            "t.toml:1:1: scripts.s.command: required key is missing",
        ]),
        ("wrong type", OK.replace("vrid = 51", "vrid = \"51\""), vec![
            "t.toml:3:8: instances.vi.vrid: invalid type: string \"51\", expected i64",
        ]),
        ("duration of the wrong type", with("advert_interval = true"), vec![
            "t.toml:5:19: instances.vi.advert_interval: invalid type: boolean `true`, expected a number of seconds or a duration string",
        ]),
        ("track entry of the wrong shape", with("track_interfaces = [{ interface = \"eth1\", wieght = 2 }]"), vec![
            "t.toml:5:43: instances.vi.track_interfaces[0].wieght: unknown key `wieght`, expected one of `script`, `interface`, `path`, `bfd`, `process`, `weight`",
        ]),
        // --- semantic: every one collected
        ("vrid 0", OK.replace("vrid = 51", "vrid = 0"), vec!["t.toml:3:8: instances.vi.vrid: 0 is out of range; allowed: 1..=255"]),
        ("vrid 256", OK.replace("vrid = 51", "vrid = 256"), vec!["t.toml:3:8: instances.vi.vrid: 256 is out of range; allowed: 1..=255"]),
        ("priority 0", with("priority = 0"), vec!["t.toml:5:12: instances.vi.priority: 0 is reserved for a master that is leaving; allowed: 1..=254, or 255 for the address owner"]),
        ("priority 256", with("priority = 256"), vec!["t.toml:5:12: instances.vi.priority: 256 is out of range; allowed: 1..=254, or 255 for the address owner"]),
        ("initial state", with("initial_state = \"MASTER\""), vec!["t.toml:5:17: instances.vi.initial_state: unknown state \"MASTER\"; allowed: \"master\", \"backup\" (write it in lower case: \"master\")"]),
        ("version 4", with("version = 4"), vec!["t.toml:5:11: instances.vi.version: VRRP version 4 does not exist; allowed: 2, 3"]),
        ("v2 fractional interval", with("version = 2\nadvert_interval = 0.5"), vec!["t.toml:6:19: instances.vi.advert_interval: 500ms is not valid for version = 2; allowed: whole seconds 1 to 255"]),
        ("v2 interval too long", with("version = 2\nadvert_interval = 256"), vec!["t.toml:6:19: instances.vi.advert_interval: 4m 16s is not valid for version = 2; allowed: whole seconds 1 to 255"]),
        ("v3 interval not 10ms steps", with("advert_interval = \"15ms\""), vec!["t.toml:5:19: instances.vi.advert_interval: 15ms is not valid for version = 3; allowed: 10ms to 40.95s in steps of 10ms"]),
        ("v3 interval too long", with("advert_interval = 41"), vec!["t.toml:5:19: instances.vi.advert_interval: 41s is not valid for version = 3; allowed: 10ms to 40.95s in steps of 10ms"]),
        ("v3 interval zero", with("advert_interval = 0"), vec!["t.toml:5:19: instances.vi.advert_interval: 0s is not valid for version = 3"]),
        ("bad duration string", with("advert_interval = \"fast\""), vec!["t.toml:5:19: instances.vi.advert_interval: \"fast\" is not a duration"]),
        ("negative duration", with("preempt_delay = -1"), vec!["t.toml:5:17: instances.vi.preempt_delay: -1 is not a valid duration"]),
        ("auth_pass with v3", with("auth_pass = \"1111\""), vec!["t.toml:5:13: instances.vi.auth_pass: only with version = 2 (VRRPv3 has no authentication)"]),
        ("auth_pass too long", with("version = 2\nauth_pass = \"123456789\""), vec!["t.toml:6:13: instances.vi.auth_pass: password is 9 bytes; allowed: 1 to 8 bytes"]),
        ("no addresses", OK.replace("[\"192.0.2.100/24\"]", "[]"), vec!["t.toml:4:21: instances.vi.virtual_addresses: at least one address is required"]),
        ("bad address", OK.replace("192.0.2.100/24", "192.0.2.300/24"), vec!["t.toml:4:22: instances.vi.virtual_addresses[0]: `192.0.2.300` is not an IPv4 or IPv6 address"]),
        ("bad prefix", OK.replace("192.0.2.100/24", "192.0.2.100/33"), vec!["t.toml:4:22: instances.vi.virtual_addresses[0]: prefix length `/33` is out of range; allowed: /1 to /32"]),
        ("bad option", OK.replace("192.0.2.100/24", "192.0.2.100/24 brd 192.0.2.255"), vec!["t.toml:4:22: instances.vi.virtual_addresses[0]: unknown option `brd`; allowed after the address: `dev NAME`, `label NAME`"]),
        ("label not matching dev", OK.replace("192.0.2.100/24", "192.0.2.100/24 dev eth0 label eth1:1"), vec!["t.toml:4:22: instances.vi.virtual_addresses[0]: label `eth1:1` must begin with the device name `eth0`"]),
        ("mixed families", OK.replace("[\"192.0.2.100/24\"]", "[\"192.0.2.100/24\", \"2001:db8::1/64\"]"), vec!["t.toml:4:40: instances.vi.virtual_addresses[1]: 2001:db8::1 is IPv6 but virtual_addresses[0] is IPv4; one family per instance"]),
        ("duplicate address", OK.replace("[\"192.0.2.100/24\"]", "[\"192.0.2.100/24\", \"192.0.2.100/32\"]"), vec!["t.toml:4:40: instances.vi.virtual_addresses[1]: 192.0.2.100 is listed twice"]),
        ("v2 with IPv6", OK.replace("192.0.2.100/24", "2001:db8::1/64") + "version = 2\n", vec!["t.toml:5:11: instances.vi.version: VRRPv2 is IPv4 only; use version = 3 for IPv6 addresses"]),
        ("bad interface name", OK.replace("\"eth0\"", "\"eth0:1\""), vec!["t.toml:2:13: instances.vi.interface: interface name `eth0:1` contains ':'"]),
        ("down_timer_adverts 0", with("down_timer_adverts = 0"), vec!["t.toml:5:22: instances.vi.down_timer_adverts: 0 is out of range; allowed: 1..=100"]),
        ("down_timer_adverts 101", with("down_timer_adverts = 101"), vec!["t.toml:5:22: instances.vi.down_timer_adverts: 101 is out of range; allowed: 1..=100"]),
        ("preempt_delay too long", with("preempt_delay = 1001"), vec!["t.toml:5:17: instances.vi.preempt_delay: 16m 41s is out of range; allowed: 0 to 1000 s"]),
        ("unicast peer of the other family", with("unicast_peers = [\"2001:db8::2\"]"), vec!["t.toml:5:18: instances.vi.unicast_peers[0]: 2001:db8::2 is IPv6 but the virtual addresses are IPv4"]),
        ("unicast peer not an address", with("unicast_peers = [\"lb02\"]"), vec!["t.toml:5:18: instances.vi.unicast_peers[0]: \"lb02\" is not an IPv4 or IPv6 address"]),
        ("unicast peer is ourselves", with("unicast_src_ip = \"192.0.2.1\"\nunicast_peers = [\"192.0.2.1\"]"), vec!["t.toml:6:18: instances.vi.unicast_peers[0]: 192.0.2.1 is this node's unicast_src_ip"]),
        ("multicast source", with("unicast_src_ip = \"224.0.0.18\""), vec!["t.toml:5:18: instances.vi.unicast_src_ip: 224.0.0.18 is not a unicast address"]),
        ("checksum option on v2", with("version = 2\nv3_checksum_as_v2 = true"), vec!["t.toml:6:21: instances.vi.v3_checksum_as_v2: applies only to version = 3 over IPv4"]),
        ("missing script", with("track_scripts = [\"check_web\"]"), vec!["t.toml:5:18: instances.vi.track_scripts[0]: no script named `check_web`; no [scripts.NAME] tables are defined"]),
        ("misspelt script", format!("[scripts.check_web]\ncommand = \"/bin/true\"\n\n{}", with("track_scripts = [{ script = \"chek_web\", weight = 5 }]")), vec!["t.toml:8:29: instances.vi.track_scripts[0]: no script named `chek_web`; defined: `check_web`"]),
        ("track weight out of range", format!("[scripts.c]\ncommand = \"/bin/true\"\n\n{}", with("track_scripts = [{ script = \"c\", weight = 254 }]")), vec!["t.toml:8:43: instances.vi.track_scripts[0].weight: 254 is out of range; allowed: -253..=253"]),
        ("wrong name key in a track list", with("track_interfaces = [{ script = \"eth1\" }]"), vec!["t.toml:5:32: instances.vi.track_interfaces[0].script: track_interfaces entries name their item with `interface = `"]),
        ("relative track file", with("track_files = [\"prio\"]"), vec!["t.toml:5:16: instances.vi.track_files[0]: `prio` is not an absolute path"]),
        ("duplicate tracked interface", with("track_interfaces = [\"eth1\", \"eth1\"]"), vec!["t.toml:5:29: instances.vi.track_interfaces[1]: `eth1` is listed twice"]),
        ("empty notify", with("notify_master = \" \""), vec!["t.toml:5:17: instances.vi.notify_master: command is empty"]),
        ("script ranges", "[scripts.s]\ncommand = \"\"\ninterval = 0\nweight = -300\nrise = 0\nfall = 1001\n".into(), vec![
            "t.toml:2:11: scripts.s.command: command is empty",
            "t.toml:3:12: scripts.s.interval: 0s is out of range; allowed: 10ms to 1 day",
            "t.toml:4:10: scripts.s.weight: -300 is out of range; allowed: -253..=253",
            "t.toml:5:8: scripts.s.rise: 0 is out of range; allowed: 1..=1000",
            "t.toml:6:8: scripts.s.fall: 1001 is out of range; allowed: 1..=1000",
        ]),
        ("global values", "[global]\nrouter_id = \"lb/01\"\nxdp = \"native\"\nmetrics = \"9650\"\nbpf_pin_dir = \"bpf\"\ngarp_master_repeat = 0\n".into(), vec![
            "t.toml:2:13: global.router_id: `lb/01` is not usable as a name",
            "t.toml:3:7: global.xdp: unknown mode \"native\"; allowed: \"auto\", \"driver\", \"skb\", \"off\"",
            "t.toml:4:11: global.metrics: \"9650\" is not ADDR:PORT",
            "t.toml:5:15: global.bpf_pin_dir: must be an absolute path",
            "t.toml:6:22: global.garp_master_repeat: 0 is out of range; allowed: 1..=100",
        ]),
        ("same (interface, family, vrid) twice", format!("{OK}\n[instances.other]\ninterface = \"eth0\"\nvrid = 51\nvirtual_addresses = [\"192.0.2.101\"]\n"), vec![
            "t.toml:8:8: instances.other.vrid: instance `vi` already uses VRID 51 for IPv4 on eth0; each (interface, family, VRID) needs its own number",
        ]),
        ("one address in two instances", format!("{OK}\n[instances.other]\ninterface = \"eth0\"\nvrid = 52\nvirtual_addresses = [\"192.0.2.100/24\"]\n"), vec![
            "t.toml:9:22: instances.other.virtual_addresses[0]: 192.0.2.100 is already a virtual address of instance `vi`",
        ]),
        ("several errors, all reported in file order", format!("{}\n[instances.b]\ninterface = \"eth0\"\nvrid = 300\nversion = 2\nadvert_interval = \"10ms\"\nvirtual_addresses = [\"10.0.0.1/24\"]\nauth_pass = \"far too long\"\n", with("priority = 0")), vec![
            "t.toml:5:12: instances.vi.priority: 0 is reserved",
            "t.toml:9:8: instances.b.vrid: 300 is out of range",
            "t.toml:11:19: instances.b.advert_interval: 10ms is not valid for version = 2",
            "t.toml:13:13: instances.b.auth_pass: password is 12 bytes",
        ]),
    ]
}

#[test]
fn broken_configs_name_file_line_column_key_and_rule() {
    let mut failures = Vec::new();
    for (what, text, expected) in cases() {
        let err = match vigil::config::parse(&text, "t.toml") {
            Ok(_) => {
                failures.push(format!("{what}: accepted\n{text}"));
                continue;
            }
            Err(e) => e,
        };
        let got: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
        let matches =
            got.len() == expected.len() && got.iter().zip(&expected).all(|(g, e)| g.contains(e));
        if !matches {
            failures.push(format!("{what}:\n  expected {expected:#?}\n  got {got:#?}"));
        }
        // Display is the same lines, one per diagnostic.
        assert_eq!(err.to_string(), got.join("\n"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn priority_255_is_the_address_owner() {
    let c = vigil::config::parse(&with("priority = 255"), "t.toml").unwrap();
    assert!(c.instances["vi"].is_address_owner());
}

#[test]
fn check_cli_prints_all_errors_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("vigil-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, with("priority = 0\nversion = 4")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    assert_eq!(
        stderr,
        format!(
            "{f}:5:12: instances.vi.priority: 0 is reserved for a master that is leaving; allowed: 1..=254, or 255 for the address owner\n\
             {f}:6:11: instances.vi.version: VRRP version 4 does not exist; allowed: 2, 3\n"
        )
    );
    assert!(!stderr.contains("panicked"));

    // Missing file: exit 1, one line, no backtrace.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "-c", "/nonexistent/vigil.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/nonexistent/vigil.toml: cannot read: No such file or directory (os error 2)\n"
    );

    // Binary garbage: still a message, not a panic.
    std::fs::write(&file, [0xff, 0xfe, 0x00, 0x5b]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));

    // A good file: one line per instance, exit 0.
    std::fs::write(&file, OK).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "vi: interface eth0 vrid 51 v3 priority 100 interval 1s addresses 192.0.2.100/24\n"
        ),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).ok();
}

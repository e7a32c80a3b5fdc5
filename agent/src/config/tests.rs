//! Unit tests for parsing and validation; the broken-config table is in
//! agent/tests/config_errors.rs.

use super::*;

const SEED_LB01: &str = r#"
[global]
router_id = "lb01"

[scripts.check_web]
command = "/server/scripts/check_web.sh"
interval = 2
weight = 2

[instances.gorup01]
interface = "eth0"
vrid = 51
priority = 150
initial_state = "master"
version = 2
advert_interval = 1
auth_pass = "1111"
virtual_addresses = ["10.0.0.3/24 dev eth0 label eth0:1"]
track_scripts = ["check_web"]
"#;

#[test]
fn seed_lb01_parses() {
    let c = parse(SEED_LB01, "lb01.toml").unwrap();
    assert_eq!(c.global.router_id, "lb01");
    let i = &c.instances["gorup01"];
    assert_eq!(i.vrid, 51);
    assert_eq!(i.version, Version::V2);
    assert_eq!(i.initial_state, InitialState::Master);
    assert_eq!(i.auth_pass.as_deref(), Some("1111"));
    assert_eq!(
        i.virtual_addresses[0].to_string(),
        "10.0.0.3/24 dev eth0 label eth0:1"
    );
    assert_eq!(
        i.track_scripts,
        vec![TrackScript {
            script: "check_web".into(),
            weight: 2
        }]
    );
    let s = &c.scripts["check_web"];
    assert_eq!(s.interval, Duration::from_secs(2));
    assert_eq!(
        s.timeout,
        Duration::from_secs(2),
        "timeout defaults to interval"
    );
}

#[test]
fn defaults() {
    let c = parse(
        "[instances.a]\ninterface = \"eth0\"\nvrid = 1\nvirtual_addresses = [\"192.0.2.1\"]\n",
        "t",
    )
    .unwrap();
    let g = &c.global;
    assert!(!g.router_id.is_empty());
    assert_eq!(g.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    assert_eq!(g.bpf_pin_dir, PathBuf::from(DEFAULT_BPF_PIN_DIR));
    assert_eq!(g.xdp, XdpMode::Auto);
    assert_eq!(g.metrics, None);
    assert!(!g.nonlocal_bind);
    assert!(g.kernel_timers);
    assert_eq!(g.realtime_priority, 10);
    assert_eq!(g.script_user, None);
    let i = &c.instances["a"];
    assert_eq!(i.priority, 100);
    assert_eq!(i.initial_state, InitialState::Backup);
    assert_eq!(i.version, Version::V3);
    assert_eq!(i.advert_interval, Duration::from_secs(1));
    assert!(i.preempt);
    assert_eq!(i.preempt_delay, Duration::ZERO);
    assert_eq!(i.down_timer_adverts, 3);
    assert!(i.accept);
    assert!(!i.v3_checksum_as_v2);
    assert_eq!(i.garp, Garp::default());
    assert_eq!(i.garp.master_delay, Duration::from_secs(5));
    assert_eq!(i.garp.master_repeat, 5);
    assert_eq!(i.garp.master_refresh, None);
    assert_eq!(i.garp.master_refresh_repeat, 1);
    assert_eq!(i.virtual_addresses[0].prefix_len, 32);
    assert_eq!(i.family(), Family::Ipv4);
}

#[test]
fn everything_set() {
    let text = r#"
[global]
router_id = "lb01"
control_socket = "/run/v.sock"
bpf_pin_dir = "/run/bpf/vigil"
xdp = "skb"
metrics = "127.0.0.1:9650"
nonlocal_bind = true
kernel_timers = false
realtime_priority = 0
script_user = "vigil"
garp_master_delay = 10
garp_master_repeat = 2
garp_master_refresh = "60s"
garp_master_refresh_repeat = 3

[scripts.chk]
command = "/bin/true"
interval = "500ms"
timeout = 0.25
weight = -20
rise = 2
fall = 3
user = "nobody"

[instances.v6]
interface = "eth1"
vrid = 7
priority = 255
version = 3
advert_interval = "10ms"
virtual_addresses = ["2001:db8::10/64 dev eth1"]
preempt = false
preempt_delay = 1.5
down_timer_adverts = 1
unicast_src_ip = "2001:db8::1"
unicast_peers = ["2001:db8::2", "fe80::2"]
accept = false
track_scripts = [{ script = "chk", weight = 5 }]
track_interfaces = ["eth2", { interface = "eth3", weight = -10 }]
track_files = ["/run/prio", { path = "/run/prio2", weight = 0 }]
notify_master = "/etc/vigil/notify.sh master"
notify_backup = "/etc/vigil/notify.sh backup"
notify_fault = "/etc/vigil/notify.sh fault"
notify_stop = "/etc/vigil/notify.sh stop"
notify = "/etc/vigil/notify.sh"
garp_master_delay = 0
garp_master_refresh = 0
garp_lower_prio_repeat = 0

[instances.v4]
interface = "eth1"
vrid = 7
auth_pass = "secret"
version = 2
advert_interval = 3
virtual_addresses = ["192.0.2.7/24"]

[instances.v4v3]
interface = "eth1"
vrid = 8
virtual_addresses = ["192.0.2.8/24"]
v3_checksum_as_v2 = true
"#;
    let c = parse(text, "t").unwrap();
    let g = &c.global;
    assert_eq!(g.xdp, XdpMode::Skb);
    assert_eq!(g.metrics, Some("127.0.0.1:9650".parse().unwrap()));
    assert!(g.nonlocal_bind);
    assert!(!g.kernel_timers);
    assert_eq!(g.realtime_priority, 0);
    assert_eq!(g.script_user.as_deref(), Some("vigil"));
    assert_eq!(
        g.garp,
        Garp {
            master_delay: Duration::from_secs(10),
            master_repeat: 2,
            master_refresh: Some(Duration::from_secs(60)),
            master_refresh_repeat: 3,
            // Unset in [global]: they follow its garp_master_* values.
            lower_prio_delay: Duration::from_secs(10),
            lower_prio_repeat: 2,
        }
    );
    let s = &c.scripts["chk"];
    assert_eq!(s.interval, Duration::from_millis(500));
    assert_eq!(s.timeout, Duration::from_millis(250));
    assert_eq!((s.weight, s.rise, s.fall), (-20, 2, 3));
    assert_eq!(s.user.as_deref(), Some("nobody"));
    let i = &c.instances["v6"];
    assert!(i.is_address_owner());
    assert_eq!(i.family(), Family::Ipv6);
    assert_eq!(i.advert_interval, Duration::from_millis(10));
    assert!(!i.preempt);
    assert_eq!(i.preempt_delay, Duration::from_millis(1500));
    assert_eq!(i.down_timer_adverts, 1);
    assert_eq!(i.unicast_peers.len(), 2);
    assert!(!i.accept);
    assert_eq!(i.track_scripts[0].weight, 5);
    assert_eq!(i.track_interfaces[0].weight, 0);
    assert_eq!(i.track_interfaces[1].weight, -10);
    assert_eq!(i.track_files[0].weight, 1);
    assert_eq!(i.track_files[1].weight, 0);
    assert_eq!(i.notify.as_deref(), Some("/etc/vigil/notify.sh"));
    // Instance values override the global ones; unset ones inherit them.
    assert_eq!(i.garp.master_delay, Duration::ZERO);
    assert_eq!(i.garp.master_refresh, None);
    assert_eq!(i.garp.master_repeat, 2);
    assert_eq!(i.garp.lower_prio_repeat, 0);
    // The lower-priority delay inherits [global]'s, not this instance's garp_master_delay.
    assert_eq!(i.garp.lower_prio_delay, Duration::from_secs(10));
    let v4 = &c.instances["v4"];
    assert_eq!(v4.garp, g.garp);
    assert_eq!(v4.advert_interval, Duration::from_secs(3));
    assert!(c.instances["v4v3"].v3_checksum_as_v2);
    assert!(i.summary("v6").contains("(owner)"));
}

#[test]
fn realtime_priority_is_a_fifo_priority() {
    let text = "[global]\nrealtime_priority = 100\n";
    let err = parse(text, "x.toml").unwrap_err();
    let lines: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("x.toml:2:21: global.realtime_priority: 100 is out of range"),
        "{err}"
    );
    let c = parse("[global]\nrealtime_priority = 99\n", "x.toml").unwrap();
    assert_eq!(c.global.realtime_priority, 99);
}

#[test]
fn collects_every_semantic_error() {
    let text = r#"
[instances.a]
interface = "eth0"
vrid = 0
priority = 300
virtual_addresses = ["10.0.0.1/99"]

[instances.b]
interface = "eth0"
vrid = 256
version = 4
virtual_addresses = []
"#;
    let err = parse(text, "x.toml").unwrap_err();
    let lines: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert!(
        lines[0].starts_with("x.toml:4:8: instances.a.vrid: 0 is out of range"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("x.toml:5:12: instances.a.priority: 300"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("x.toml:6:22: instances.a.virtual_addresses[0]: prefix length"),
        "{err}"
    );
    assert!(
        lines[3].starts_with("x.toml:10:8: instances.b.vrid"),
        "{err}"
    );
    assert!(
        lines[4].starts_with("x.toml:11:11: instances.b.version"),
        "{err}"
    );
    assert!(
        lines[5].starts_with("x.toml:12:21: instances.b.virtual_addresses: at least one"),
        "{err}"
    );
    // Display is one message per line.
    assert_eq!(err.to_string().lines().count(), 6);
}

#[test]
fn structural_errors_have_a_key_path() {
    let err = parse("[instances.a]\ninterface = \"eth0\"\nvrid = 1\nvirtual_addresses = [\"192.0.2.1\"]\nprio = 5\n", "t").unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.column), (5, 1), "{err}");
    assert_eq!(d.path, "instances.a.prio", "{err}");
    assert!(d.message.contains("unknown key `prio`"), "{err}");
    assert!(
        d.message.contains("`priority`"),
        "lists allowed keys: {err}"
    );

    let err = parse(
        "[instances.a]\ninterface = \"eth0\"\nvirtual_addresses = [\"192.0.2.1\"]\n",
        "t",
    )
    .unwrap_err();
    let d = &err.diagnostics[0];
    assert_eq!(d.path, "instances.a.vrid", "{err}");
    assert_eq!(d.message, "required key is missing");
    assert_eq!(d.line, 1, "{err}");
}

#[test]
fn load_reports_unreadable_files() {
    let err = load(Path::new("/nonexistent/vigil.toml")).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/vigil.toml: cannot read: "),
        "{err}"
    );
}

#[test]
fn instances_compare_for_reload() {
    let a = parse(SEED_LB01, "a").unwrap();
    let b = parse(&SEED_LB01.replace("priority = 150", "priority = 151"), "b").unwrap();
    assert_ne!(a.instances["gorup01"], b.instances["gorup01"]);
    let c = parse(&SEED_LB01.replace("# nothing", ""), "c").unwrap();
    assert_eq!(a, c);
}

const PARITY: &str = r#"
[processes.nginx]
name = "nginx"
quorum = 2
delay = 1.5
terminate_delay = 3

[processes.exact]
name = "/usr/sbin/nginx"
command_line = "/usr/sbin/nginx -g daemon off;"
quorum_max = 1
weight = -30

[scripts.chk]
command = "true"

[instances.outside]
interface = "eth0"
vrid = 1
use_vmac = true
virtual_addresses = ["192.0.2.1/24"]
excluded_addresses = ["2001:db8::1/64", "198.51.100.7/32 dev eth1"]
track_processes = ["nginx", { process = "exact", weight = 10 }]

[instances.inside]
interface = "eth1"
vrid = 2
virtual_addresses = ["198.51.100.1/24"]

[sync_groups.router]
instances = ["outside", "inside"]
track_scripts = [{ script = "chk", weight = 50 }]
notify = "/bin/true"
"#;

#[test]
fn processes_sync_groups_and_excluded_addresses_parse() {
    let c = parse(PARITY, "p.toml").unwrap();
    let p = &c.processes["nginx"];
    assert_eq!((p.quorum, p.quorum_max, p.weight), (2, None, 0));
    assert_eq!(p.fork_delay, Duration::from_millis(1500), "delay sets both");
    assert_eq!(
        p.terminate_delay,
        Duration::from_secs(3),
        "its own key wins"
    );
    assert_eq!(c.processes["exact"].command_match, CommandMatch::Exact);
    let partial = PARITY.replacen(
        "quorum_max = 1\n",
        "quorum_max = 1\ncommand_match = \"partial\"\n",
        1,
    );
    let c2 = parse(&partial, "p.toml").unwrap();
    assert_eq!(c2.processes["exact"].command_match, CommandMatch::Partial);
    let o = &c.instances["outside"];
    assert_eq!(
        o.vmac,
        Some(Vmac {
            interface: "vrrp.1".into(),
            xmit_base: false
        }),
        "keepalived's default name"
    );
    assert_eq!(c.instances["inside"].vmac, None);
    assert_eq!(o.excluded_addresses.len(), 2);
    assert_eq!(o.excluded_addresses[0].family(), Family::Ipv6);
    assert_eq!(
        o.track_processes,
        vec![
            TrackProcess {
                process: "nginx".into(),
                weight: 0
            },
            // A sync group member's weights are ignored, as keepalived does.
            TrackProcess {
                process: "exact".into(),
                weight: 0
            },
        ]
    );
    // Outside a group the weight given in the entry stands.
    let alone = parse(&PARITY.replace("[sync_groups.router]\ninstances = [\"outside\", \"inside\"]\ntrack_scripts = [{ script = \"chk\", weight = 50 }]\nnotify = \"/bin/true\"\n", ""), "p.toml").unwrap();
    assert!(alone.sync_groups.is_empty());
    assert_eq!(alone.instances["outside"].track_processes[1].weight, 10);
    let g = &c.sync_groups["router"];
    assert_eq!(
        g.instances,
        vec!["outside".to_string(), "inside".to_string()]
    );
    // Group tracking reaches every member, FAULT-only whatever weight was given.
    for m in ["outside", "inside"] {
        assert_eq!(
            c.instances[m].track_scripts,
            vec![TrackScript {
                script: "chk".into(),
                weight: 0
            }]
        );
    }
}

#[test]
fn parity_keys_are_checked() {
    let cases = [
        (
            "quorum_max = 1",
            "quorum = 2\nquorum_max = 1",
            "is below quorum",
        ),
        (
            "track_processes = [\"nginx\", { process = \"exact\", weight = 10 }]",
            "track_processes = [\"nope\"]",
            "no process named `nope`",
        ),
        (
            "instances = [\"outside\", \"inside\"]",
            "instances = [\"outside\", \"missing\"]",
            "no instance named `missing`",
        ),
        (
            "instances = [\"outside\", \"inside\"]",
            "instances = [\"outside\"]",
            "at least two instances",
        ),
        (
            "excluded_addresses = [\"2001:db8::1/64\", \"198.51.100.7/32 dev eth1\"]",
            "excluded_addresses = [\"198.51.100.1\"]",
            "already a virtual address of instance",
        ),
        (
            "vrid = 2\n",
            "vrid = 2\nvmac_interface = \"v2\"\n",
            "only with use_vmac = true",
        ),
        (
            "vrid = 2\n",
            "vrid = 2\nuse_vmac = true\nvmac_interface = \"vrrp.1\"\n",
            "already uses the virtual MAC interface vrrp.1",
        ),
        (
            "vrid = 2\n",
            "vrid = 2\nvirtual_routes = [\"198.51.100.0/24 onlink\"]\n",
            "unknown option `onlink`",
        ),
        (
            "quorum = 2\n",
            "quorum = 2\ncommand_match = \"partial\"\n",
            "only with command_line",
        ),
        (
            "quorum_max = 1\n",
            "quorum_max = 1\ncommand_match = \"prefix\"\n",
            "`prefix`: expected exact, initial or partial",
        ),
    ];
    for (from, to, want) in cases {
        let text = PARITY.replacen(from, to, 1);
        assert_ne!(text, PARITY, "{from}");
        let e = parse(&text, "p.toml").expect_err(want).to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

//! keepalived.conf files converted by `vigil import-keepalived` elect the same way as
//! keepalived itself: the same node ends up holding each virtual address, whether both
//! nodes run keepalived, both run vigil, or one of each. The golden files of
//! agent/tests/golden/ are checked this way, and so are shapes where keepalived derives
//! what the file does not say (its Master's adverts, compared field by field on the wire,
//! carry the same VRID, version, priority and interval).

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_tests::agent::{Keepalived, Vigil, has_address};
use vigil_tests::capture::{Capture, Packet};
use vigil_tests::{Host, Lab, require_root, vigil_bin};

/// Their VIPs are 10.0.0.3 and 10.0.0.4; the lab uses TEST-NET instead.
const VIPS: [(&str, &str); 2] = [("10.0.0.3", "192.0.2.100"), ("10.0.0.4", "192.0.2.101")];

fn seed(name: &str) -> anyhow::Result<String> {
    let path = format!(
        "{}/../agent/tests/golden/{name}.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path)?;
    for (from, to) in VIPS {
        text = text.replace(from, to);
    }
    Ok(text)
}

/// `vigil import-keepalived [--config-id ID]` of `conf`, with the test's control socket
/// and pin dir.
fn import(
    host: &Host,
    lab: &Lab,
    bpffs: &std::path::Path,
    conf: &str,
    config_id: Option<&str>,
) -> anyhow::Result<String> {
    let path = lab.dir.join(format!("{}-import.conf", host.name));
    std::fs::write(&path, conf)?;
    let bin = vigil_bin().to_string_lossy().into_owned();
    let path_s = path.to_string_lossy().into_owned();
    let id_arg = config_id.map(|id| format!("--config-id={id}"));
    let mut argv = vec![bin.as_str(), "import-keepalived", path_s.as_str()];
    argv.extend(id_arg.as_deref());
    let out = host.exec(&argv)?;
    anyhow::ensure!(
        out.status.success(),
        "import-keepalived failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout)?;
    let ours = format!(
        "control_socket = \"{}/{}.sock\"\nbpf_pin_dir = \"{}\"\n",
        lab.dir.display(),
        host.name,
        bpffs.display()
    );
    Ok(if toml.contains("[global]\n") {
        toml.replacen("[global]\n", &format!("[global]\n{ours}"), 1)
    } else {
        format!("[global]\n{ours}\n{toml}")
    })
}

/// Which host holds each of `vips` once the election has settled.
fn holders(hosts: &[&Host], vips: &[&'static str]) -> BTreeMap<&'static str, Vec<String>> {
    vips.iter()
        .map(|vip| {
            let on = hosts
                .iter()
                .filter(|h| has_address(h, vip))
                .map(|h| h.name.clone())
                .collect();
            (*vip, on)
        })
        .collect()
}

/// One VRRP advert as sent: source, VRID, version, priority and the interval field
/// (v2: seconds; v3: centiseconds). RFC 5798 §5.1, RFC 3768 §5.3.
type Advert = (String, u8, u8, u8, u16);

/// The distinct IPv4 adverts in a capture.
fn advert_fields(packets: &[Packet]) -> std::collections::BTreeSet<Advert> {
    let mut out = std::collections::BTreeSet::new();
    for p in packets {
        let d = &p.data;
        if d.len() < 34 || u16::from_be_bytes([d[12], d[13]]) != 0x0800 || d[23] != 112 {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let v = &d[14 + ihl..];
        if v.len() < 8 {
            continue;
        }
        let version = v[0] >> 4;
        let interval = if version == 2 {
            u16::from(v[5])
        } else {
            u16::from_be_bytes([v[4], v[5]]) & 0x0fff
        };
        let src = std::net::Ipv4Addr::new(d[26], d[27], d[28], d[29]).to_string();
        out.insert((src, v[1], version, v[2], interval));
    }
    out
}

/// What a pair did: who holds each VIP, and the adverts seen once it settled.
type Outcome = (
    BTreeMap<&'static str, Vec<String>>,
    std::collections::BTreeSet<Advert>,
);

/// Runs `confs` on lb01 and lb02 (keepalived, or vigil on what `import-keepalived` makes of
/// them, per `vigil_on`), with keepalived's config ids `ids`, and reports the outcome.
fn elect_texts(
    tag: &str,
    confs: [&str; 2],
    ids: [Option<&str>; 2],
    vigil_on: [bool; 2],
    vips: &[&'static str],
) -> anyhow::Result<Outcome> {
    let mut lab = Lab::new(tag, &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let hosts = [lab.host("lb01").clone(), lab.host("lb02").clone()];
    // Held until the result is read; dropping stops them.
    let (mut vigils, mut keepaliveds) = (Vec::new(), Vec::new());
    for (((host, conf), id), vigil) in hosts.iter().zip(confs).zip(ids).zip(vigil_on) {
        if vigil {
            let toml = import(host, &lab, &bpffs, conf, id)?;
            vigils.push(Vigil::start(host, &lab.dir, &toml)?);
        } else {
            keepaliveds.push(Keepalived::start_as(host, &lab.dir, conf, id)?);
        }
    }
    // Both start as Backup (or keepalived's `state MASTER` below 255 waits too): the
    // slowest Master_Down_Interval at 1 s adverts is 3 + 156/256 s; wait past it, then
    // watch the settled adverts for more than one interval.
    std::thread::sleep(Duration::from_millis(4000));
    let cap = Capture::start(
        &hosts[0],
        "eth0",
        "ip proto 112",
        &lab.dir.join(format!("{tag}.pcap")),
    )?;
    std::thread::sleep(Duration::from_millis(1600));
    let adverts = advert_fields(&cap.stop()?);
    let result = holders(&[&hosts[0], &hosts[1]], vips);
    drop((vigils, keepaliveds));
    Ok((result, adverts))
}

fn elect(
    tag: &str,
    confs: [&str; 2],
    vigil_on: [bool; 2],
) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let texts = [seed(confs[0])?, seed(confs[1])?];
    let vips: Vec<&'static str> = VIPS.iter().map(|(_, v)| *v).collect();
    let (held, _) = elect_texts(tag, [&texts[0], &texts[1]], [None, None], vigil_on, &vips)?;
    Ok(held)
}

fn same_everywhere(tag: &str, confs: [&str; 2]) -> anyhow::Result<()> {
    let keepalived = elect(&format!("{tag}k"), confs, [false, false])?;
    assert!(
        keepalived.values().any(|h| h.len() == 1),
        "keepalived elected nobody: {keepalived:?}"
    );
    for mix in [[true, true], [true, false], [false, true]] {
        let got = elect(&format!("{tag}v"), confs, mix)?;
        assert_eq!(
            got, keepalived,
            "vigil on {mix:?} elected differently from keepalived"
        );
    }
    Ok(())
}

/// keepalived on both nodes, then vigil on both (imported), then vigil on lb01 only: the
/// same holders and, with vigil on both, the same adverts on the wire.
fn same_on_the_wire(
    tag: &str,
    confs: [&str; 2],
    ids: [Option<&str>; 2],
    vips: &[&'static str],
) -> anyhow::Result<()> {
    let (held, adverts) = elect_texts(&format!("{tag}k"), confs, ids, [false, false], vips)?;
    assert!(
        held.values().all(|h| h.len() == 1),
        "keepalived did not elect one holder per address: {held:?}"
    );
    assert!(!adverts.is_empty(), "no adverts from keepalived");
    let (got, got_adverts) = elect_texts(&format!("{tag}v"), confs, ids, [true, true], vips)?;
    assert_eq!(got, held, "vigil elected differently from keepalived");
    assert_eq!(
        got_adverts, adverts,
        "vigil's adverts (source, VRID, version, priority, interval) differ from keepalived's"
    );
    let (mixed, _) = elect_texts(&format!("{tag}m"), confs, ids, [true, false], vips)?;
    assert_eq!(mixed, held, "vigil beside keepalived elected differently");
    Ok(())
}

/// `state MASTER` without `priority` is keepalived's address owner (255): it wins over a
/// Backup at 200, and a weighted failing check does not move it (keepalived ignores
/// weights on the owner). Beside it a lower-case `state master` (BACKUP to keepalived)
/// with `nopreempt` below a preempting peer: whoever's timer fires first, the peer ends up
/// Master.
const OWNER_LB01: &str = "global_defs {\n script_user root\n}\n\
vrrp_script failing {\n script /bin/false\n interval 1\n weight -100\n}\n\
vrrp_instance owner {\n state MASTER\n interface eth0\n virtual_router_id 61\n\
 virtual_ipaddress {\n  192.0.2.161/24\n }\n track_script {\n  failing\n }\n}\n\
vrrp_instance lower {\n state master\n nopreempt\n interface eth0\n virtual_router_id 62\n\
 priority 120\n virtual_ipaddress {\n  192.0.2.162/24\n }\n}\n";
const OWNER_LB02: &str = "vrrp_instance owner {\n state BACKUP\n interface eth0\n\
 virtual_router_id 61\n priority 200\n virtual_ipaddress {\n  192.0.2.161/24\n }\n}\n\
vrrp_instance lower {\n state BACKUP\n interface eth0\n virtual_router_id 62\n\
 priority 130\n virtual_ipaddress {\n  192.0.2.162/24\n }\n}\n";

#[test]
fn keepalived_derived_priorities_elect_alike() -> anyhow::Result<()> {
    require_root();
    same_on_the_wire(
        "impo",
        [OWNER_LB01, OWNER_LB02],
        [None, None],
        &["192.0.2.161", "192.0.2.162"],
    )
}

/// One file for both nodes: a `vrrp_instance` template defined over several lines,
/// repeated by `~SEQ`, with per-node priorities chosen by `@id` lines (keepalived `-i`,
/// `import-keepalived --config-id`); VRRPv3 at 0.5 s.
const TEMPLATED: &str = "@lb01 $PRIO=150\n@^lb01 $PRIO=100\n\
$INST=vrrp_instance VI_${N} { \\\n interface eth0 \\\n version 3 \\\n advert_int 0.5 \\\n\
 virtual_router_id 7${N} \\\n priority $PRIO \\\n virtual_ipaddress { \\\n  192.0.2.17${N}/24 \\\n } \\\n}\n\
~SEQ(N, 1, 2) $INST\n";

#[test]
fn templated_file_with_config_ids_elects_alike() -> anyhow::Result<()> {
    require_root();
    same_on_the_wire(
        "impt",
        [TEMPLATED, TEMPLATED],
        [Some("lb01"), Some("lb02")],
        &["192.0.2.171", "192.0.2.172"],
    )
}

#[test]
fn imported_seed_pair_elects_like_keepalived() -> anyhow::Result<()> {
    require_root();
    same_everywhere("imp", ["lb01", "lb02"])
}

#[test]
fn imported_seed_dual_master_elects_like_keepalived() -> anyhow::Result<()> {
    require_root();
    same_everywhere("impd", ["dual-master-lb01", "dual-master-lb02"])
}

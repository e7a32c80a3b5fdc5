//! keepalived.conf → vigil TOML golden files (agent/tests/golden/NAME.conf →
//! NAME.toml on stdout and NAME.stderr), and the promise that every golden output and
//! every packaging example passes `vigil check`.
//!
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p vigil --test
//! import_golden`, then review the diff.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Golden cases are the `.conf` files directly in tests/golden (conf.d/ holds includes).
fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/golden")
        .expect("tests/golden exists (cargo runs tests from the package root)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    v.sort();
    assert!(v.len() >= 7, "golden cases missing: {v:?}");
    v
}

/// What `vigil import-keepalived` prints on stderr, as the CLI formats it.
fn stderr_of(import: &vigil::keepalived::Import) -> String {
    let mut s = String::new();
    for w in &import.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if let Some(e) = &import.check {
        s.push_str(&format!("check failed:\n{e}\n"));
    }
    s
}

fn compare_or_update(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the importer's output:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn golden_files() {
    for conf in cases() {
        let import = vigil::keepalived::import_file(&conf)
            .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        compare_or_update(&conf.with_extension("toml"), &import.toml);
        compare_or_update(&conf.with_extension("stderr"), &stderr_of(&import));
    }
}

#[test]
fn every_golden_output_passes_check() {
    for conf in cases() {
        let toml = conf.with_extension("toml");
        if let Err(e) = vigil::config::load(&toml) {
            panic!("{} does not pass validation:\n{e}", toml.display());
        }
    }
}

#[test]
fn every_packaging_example_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir("../packaging/examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = vigil::config::load(&path) {
                panic!("{} does not pass validation:\n{e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "expected lb01, lb02 and dual-master examples");
}

/// The keepalived pairs (agent/tests/golden/) must elect as keepalived would: same VRIDs, versions, priorities,
/// initial states, passwords and addresses on both sides.
#[test]
fn seed_pairs_keep_their_election_parameters() {
    let load =
        |name: &str| vigil::config::load(Path::new(&format!("tests/golden/{name}.toml"))).unwrap();
    let lb01 = load("lb01");
    let lb02 = load("lb02");
    let (a, b) = (&lb01.instances["gorup01"], &lb02.instances["group01"]);
    assert_eq!((a.vrid, b.vrid), (51, 51));
    assert_eq!((a.priority, b.priority), (150, 100));
    assert_eq!(a.version, vigil::config::Version::V2);
    assert_eq!(a.version, b.version);
    assert_eq!(a.auth_pass.as_deref(), Some("1111"));
    assert_eq!(a.auth_pass, b.auth_pass);
    assert_eq!(a.advert_interval, b.advert_interval);
    assert_eq!(a.virtual_addresses, b.virtual_addresses);
    assert_eq!(a.initial_state, vigil::config::InitialState::Master);
    assert_eq!(b.initial_state, vigil::config::InitialState::Backup);
    assert_eq!(lb01.global.router_id, "lb01");

    let d1 = load("dual-master-lb01");
    let d2 = load("dual-master-lb02");
    for name in ["gorup01", "gorup02"] {
        let (x, y) = (&d1.instances[name], &d2.instances[name]);
        assert_eq!(x.vrid, y.vrid);
        assert_eq!(x.virtual_addresses, y.virtual_addresses);
        assert_ne!(x.priority, y.priority, "{name}: one side must win");
    }
    assert_eq!(d1.instances["gorup01"].priority, 150);
    assert_eq!(d2.instances["gorup02"].priority, 150);

    let web = load("lb01-check-web");
    assert_eq!(web.scripts["check_web"].weight, 2);
    assert_eq!(
        web.scripts["check_web"].interval,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(
        web.instances["gorup01"].track_scripts[0].script,
        "check_web"
    );
}

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-import-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `--config-id` picks a node's `@id` lines, as keepalived `-i` does: include-macros.conf
/// gives lb01 priority 150 and a GARP refresh, every other node priority 100.
#[test]
fn cli_import_config_id_applies_that_nodes_lines() {
    let run = |id: &str| {
        let out = vigil()
            .args(["import-keepalived", "tests/golden/include-macros.conf"])
            .arg(format!("--config-id={id}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("conditional"), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let lb01 = run("lb01");
    assert!(lb01.contains("priority = 150\n"), "{lb01}");
    assert!(lb01.contains("garp_master_refresh = 60\n"), "{lb01}");
    let lb02 = run("lb02");
    assert!(lb02.contains("priority = 100\n"), "{lb02}");
    assert!(!lb02.contains("garp_master_refresh"), "{lb02}");
}

#[test]
fn cli_import_then_check() {
    let out = vigil()
        .args(["import-keepalived", "tests/golden/lb01.conf"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string("tests/golden/lb01.toml").unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    let dir = scratch("lb01");
    let file = dir.join("vigil.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = vigil().arg("check").arg("-c").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("gorup01: interface eth0 vrid 51 v2 priority 150 interval 1s addresses 10.0.0.3/24 dev eth0 label eth0:1"),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cli_import_warnings_name_file_line_and_keyword() {
    let out = vigil()
        .args(["import-keepalived", "tests/golden/layout.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: tests/golden/layout.conf:39: /etc/init.d/keepalived: unknown keyword"
        ),
        "{stderr}"
    );
}

#[test]
fn cli_import_failures_exit_1_with_file_and_line() {
    let out = vigil()
        .args(["import-keepalived", "tests/golden/no-such-file.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: tests/golden/no-such-file.conf: cannot read"),
        "{stderr}"
    );

    let dir = scratch("broken");
    let file = dir.join("keepalived.conf");
    std::fs::write(
        &file,
        "vrrp_instance A {\n  interface eth0\n  virtual_ipaddress {\n    10.0.0.3\n}\n",
    )
    .unwrap();
    let out = vigil()
        .arg("import-keepalived")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1: `{{` is never closed", file.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // Parsed, but the result needs hand work: TOML still printed, exit 1.
    std::fs::write(&file, "vrrp_instance A {\n  interface eth0\n}\n").unwrap();
    let out = vigil()
        .arg("import-keepalived")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not pass `vigil check`"), "{stderr}");
    assert!(
        stderr.contains("instances.A.vrid: required key is missing"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Network namespaces this test makes start with this; a dead run's are removed first.
const NETNS_PREFIX: &str = "vigil-kt-";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes namespaces a run of this test left behind when its process is gone.
fn clear_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            ip(&["netns", "del", name]);
        }
    }
}

/// Where Debian's keepalived accepts a golden file (`keepalived -t`, in a namespace with
/// the interfaces the files name), the importer converts it with exit status 0 and the
/// result passes `vigil check`. Skipped (with a message) without keepalived or root.
#[test]
fn what_keepalived_accepts_imports_and_checks() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(keepalived) = keepalived else {
        eprintln!("keepalived is not installed (cargo xtask setup installs it): skipped");
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root for a network namespace: skipped");
        return;
    }
    clear_stale_namespaces();
    let ns = format!("{NETNS_PREFIX}{}", std::process::id());
    assert!(ip(&["netns", "add", &ns]), "cannot create namespace {ns}");
    for i in ["eth0", "eth1", "eth2"] {
        let peer = format!("{i}-p");
        assert!(ip(&[
            "-n", &ns, "link", "add", i, "type", "veth", "peer", "name", &peer
        ]));
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for conf in cases() {
        let text = std::fs::read_to_string(&conf).unwrap();
        if text.starts_with("# keepalived -t: not checked") {
            continue;
        }
        let claims = text.starts_with("# keepalived -t: accepts");
        let abs = std::fs::canonicalize(&conf).unwrap();
        // keepalived 2.2.7's -t ends by sending SIGTERM to its process group when scripts
        // are configured: a group of its own keeps the signal away from this test, and
        // that ending counts as a pass (a configuration error exits with a status).
        let kt = Command::new("ip")
            .args(["netns", "exec", &ns, keepalived, "-t", "-f"])
            .arg(&abs)
            .process_group(0)
            .output()
            .unwrap();
        let accepted = kt.status.success() || kt.status.signal() == Some(libc::SIGTERM);
        if !accepted {
            if claims {
                failures.push(format!(
                    "{}: says keepalived accepts it, but keepalived -t exits {}: {}",
                    conf.display(),
                    kt.status,
                    String::from_utf8_lossy(&kt.stderr)
                ));
            } else {
                eprintln!(
                    "{}: keepalived -t rejects it here ({}); not compared",
                    conf.display(),
                    kt.status
                );
            }
            continue;
        }
        let out = vigil()
            .arg("import-keepalived")
            .arg(&conf)
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: keepalived accepts it, import-keepalived exits {:?}: {}",
                conf.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let dir = scratch("kt");
        let file = dir.join(conf.with_extension("toml").file_name().unwrap());
        std::fs::write(&file, &out.stdout).unwrap();
        let check = vigil().arg("check").arg("-c").arg(&file).output().unwrap();
        if check.status.code() != Some(0) {
            failures.push(format!(
                "{}: vigil check rejects the import: {}",
                conf.display(),
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        std::fs::remove_dir_all(dir).ok();
        checked += 1;
    }
    ip(&["netns", "del", &ns]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 10,
        "only {checked} files checked against keepalived"
    );
}

const INSIDE_AUTH_HMAC: [&str; 5] = ["key", "active_key", "time_window", "anti_replay", "mode"];

/// Every keyword in the importer's table appears in a golden file, and the catalogue
/// file shows what happens to each: a dropped keyword is warned by name, a carried one
/// is never called unknown or unsupported.
#[test]
fn every_keyword_has_a_golden_case() {
    use vigil::keepalived::keywords::{Fate, KEYWORDS};
    let mut all = String::new();
    for entry in std::fs::read_dir("tests/golden")
        .unwrap()
        .chain(std::fs::read_dir("tests/golden/conf.d").unwrap())
    {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "conf") {
            all.push_str(&std::fs::read_to_string(&p).unwrap());
            all.push('\n');
        }
    }
    let words: std::collections::HashSet<&str> = all
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = if l.starts_with('@') {
                l.split_once(char::is_whitespace)
                    .map_or("", |x| x.1)
                    .trim_start()
            } else {
                l
            };
            l.split_whitespace().next()
        })
        .collect();
    let missing: Vec<&str> = KEYWORDS
        .iter()
        .map(|k| k.name)
        .filter(|n| !words.contains(n))
        .collect();
    assert!(missing.is_empty(), "no golden case uses: {missing:?}");

    let import = vigil::keepalived::import_file(Path::new("tests/golden/every-keyword.conf"))
        .expect("the catalogue parses");
    for k in KEYWORDS {
        let warned: Vec<&String> = import
            .warnings
            .iter()
            .filter(|w| w.keyword == k.name)
            .map(|w| &w.message)
            .collect();
        match k.fate {
            // auth_hmac's own keywords are skipped with their block, warned once.
            Fate::Dropped(_) if !INSIDE_AUTH_HMAC.contains(&k.name) => assert!(
                !warned.is_empty(),
                "{} ({}) is not carried over but got no warning",
                k.name,
                k.block.title()
            ),
            // A name dropped in another block (global v3_checksum_as_v2) is warned there.
            Fate::Carried(_)
                if KEYWORDS
                    .iter()
                    .any(|o| o.name == k.name && matches!(o.fate, Fate::Dropped(_))) => {}
            Fate::Carried(_) => assert!(
                !warned.iter().any(
                    |m| m.starts_with("unknown keyword") || m.starts_with("not carried over: ")
                ),
                "{} ({}) is carried over but warned as dropped: {warned:?}",
                k.name,
                k.block.title()
            ),
            _ => {}
        }
    }
    assert!(
        import.check.is_none(),
        "the catalogue's output fails check: {:?}",
        import.check
    );
}

/// docs/migrating-from-keepalived.md lists every keyword exactly as the importer's table
/// does (regenerate with UPDATE_GOLDEN=1).
#[test]
fn the_migration_guide_lists_every_keyword() {
    let path = Path::new("../docs/migrating-from-keepalived.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- keywords:begin -->\n", "<!-- keywords:end -->");
    let a = doc.find(begin).expect("keywords:begin marker") + begin.len();
    let b = doc.find(end).expect("keywords:end marker");
    let table = vigil::keepalived::keywords::markdown();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let new = format!("{}{table}{}", &doc[..a], &doc[b..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert!(
        doc[a..b] == table,
        "the keyword table in {} differs from the importer's (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

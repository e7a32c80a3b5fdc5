//! The Prometheus endpoint, scraped with curl inside the agent's namespace.

use std::time::Duration;

use vigil_tests::agent::Vigil;
use vigil_tests::{Lab, require_root};

fn instance(priority: u8) -> String {
    format!(
        "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [\"192.0.2.100/24\"]\n"
    )
}

#[test]
fn metrics_endpoint_reports_states_transitions_adverts_and_datapath_counters() -> anyhow::Result<()>
{
    require_root();
    let mut lab = Lab::new("metrics", &["lb01", "lb02"])?;
    let bpffs = lab.bpffs()?;
    let dir = lab.dir.clone();
    let [lb01, lb02] = lab.clone_hosts();
    let v1 = Vigil::start_with(&lb01, &dir, &bpffs, "", &instance(150))?;
    let extra = "metrics = \"127.0.0.1:9650\"";
    let v2 = Vigil::start_with(&lb02, &dir, &bpffs, extra, &instance(100))?;
    v1.wait_state("web", "MASTER", Duration::from_secs(3))?;
    v2.wait_state("web", "BACKUP", Duration::from_secs(3))?;
    // Scrape until the master's adverts have reached the backup's datapath counters.
    let scrape = || -> anyhow::Result<String> {
        let out = lb02.exec(&[
            "curl",
            "-sf",
            "--max-time",
            "3",
            "http://127.0.0.1:9650/metrics",
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let accepted = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(
                    "vigil_datapath_frames_total{interface=\"eth0\",verdict=\"accepted\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut text = scrape()?;
    for _ in 0..40 {
        if accepted(&text).unwrap_or(0) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        text = scrape()?;
    }
    for want in [
        "vigil_instance_state{instance=\"web\",state=\"BACKUP\"} 1",
        "vigil_instance_state{instance=\"web\",state=\"MASTER\"} 0",
        "vigil_instance_priority{instance=\"web\"} 100",
        "vigil_instance_effective_priority{instance=\"web\"} 100",
        "vigil_transitions_total{instance=\"web\",from=\"INIT\",to=\"BACKUP\",reason=\"startup\"} 1",
        "# TYPE vigil_datapath_frames counter",
        "vigil_datapath_frames_total{interface=\"eth0\",verdict=\"ttl\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        accepted(&text).expect("accepted counter") > 0,
        "the master's adverts were counted:\n{text}"
    );
    let missing = lb02.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9650/other",
    ])?;
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    Ok(())
}

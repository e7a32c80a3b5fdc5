//! Packet captures with tcpdump inside a namespace, read back from the pcap file.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Host;

/// A running tcpdump writing a nanosecond pcap file.
pub struct Capture {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The pcap file.
    pub path: PathBuf,
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Capture time, CLOCK_REALTIME ns.
    pub ts_ns: u64,
    /// The frame's bytes.
    pub data: Vec<u8>,
}

impl Capture {
    /// Starts capturing on `iface` of `host` with a tcpdump `filter` into `path`; returns
    /// once tcpdump is listening.
    pub fn start(host: &Host, iface: &str, filter: &str, path: &Path) -> anyhow::Result<Self> {
        let path_s = path.to_string_lossy().into_owned();
        let mut child = host.spawn(&[
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
            "-i",
            iface,
            "-U",
            "-n",
            "-s",
            "256",
            "--time-stamp-precision=nano",
            "-w",
            &path_s,
            filter,
        ])?;
        // tcpdump says "listening on" on stderr once the socket is open.
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = text.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Some(Ok(line)) = lines.next() {
                if let Ok(mut t) = keep.lock() {
                    t.push_str(&line);
                    t.push('\n');
                }
                if line.contains("listening on")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            bail!("tcpdump did not start on {iface} in {}", host.ns);
        }
        Ok(Self {
            child,
            stderr: text,
            path: path.to_owned(),
        })
    }

    /// Stops tcpdump and reads the frames it wrote.
    pub fn stop(mut self) -> anyhow::Result<Vec<Packet>> {
        // SIGINT lets tcpdump flush the file.
        // SAFETY: plain syscall on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        read_pcap(&self.path).with_context(|| {
            format!(
                "tcpdump said: {}",
                self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
            )
        })
    }

    /// What tcpdump printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Reads a pcap file (microsecond or nanosecond).
pub fn read_pcap(path: &Path) -> anyhow::Result<Vec<Packet>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 24 {
        bail!("{}: not a pcap file", path.display());
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let nano = match magic {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        _ => bail!("{}: unsupported pcap magic {magic:#x}", path.display()),
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let word =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let (sec, frac, caplen) = (word(off), word(off + 4), word(off + 8) as usize);
        off += 16;
        if off + caplen > bytes.len() {
            break;
        }
        let ts_ns = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nano { 1 } else { 1000 };
        out.push(Packet {
            ts_ns,
            data: bytes[off..off + caplen].to_vec(),
        });
        off += caplen;
    }
    Ok(out)
}

/// tshark's decode of `pcap`: one row of `fields` per packet matching the display
/// filter `filter`.
pub fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut cmd = std::process::Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-Y", filter, "-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = crate::run(&mut cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

/// A MAC as tshark and `ip` print it (`00:00:5e:00:01:33`).
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

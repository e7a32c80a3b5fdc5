//! `vigil trace`: a live view of the VRRP frames the XDP program sees on an interface;
//! with `--bfd`, of the running agent's BFD sessions ([`bfd`]).

pub mod bfd;

use std::time::Duration;

use tokio::sync::mpsc;
use vigil_common::Settings;

use vigil_common::event::{FAMILY_V4, FAMILY_V6};
use vigil_common::{VridKey, WatchEntry, validate};

use crate::datapath::{rawsock, ring, xdp};

fn key(ifindex: u32, w: &WatchSpec) -> VridKey {
    VridKey {
        ifindex,
        family: w.family,
        vrid: w.vrid,
        _pad: 0,
    }
}

/// Options of `vigil trace`.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Interface to watch.
    pub interface: String,
    /// Show dropped frames too.
    pub all: bool,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Attach mode; `None` uses the raw-socket path (as `xdp = "off"`).
    pub mode: Option<xdp::AttachMode>,
    /// Pin the program's maps here (for bpftool) while tracing.
    pub pin_dir: Option<std::path::PathBuf>,
    /// Virtual routers to watch, as the agent would (VRID, version, v2 password).
    pub watch: Vec<WatchSpec>,
    /// Stop after this many records (for scripts and tests).
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// A virtual router `vigil trace --watch` watches: `VRID[/v2|/v3][/pass=SECRET][/unicast]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    /// VRID.
    pub vrid: u8,
    /// Address family (4 or 6).
    pub family: u8,
    /// What the program checks.
    pub entry: WatchEntry,
}

impl std::str::FromStr for WatchSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('/');
        let vrid = parts
            .next()
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("{s:?}: expected VRID 1..255 first"))?;
        let mut spec = WatchSpec {
            vrid,
            family: FAMILY_V4,
            entry: WatchEntry {
                version: 3,
                ..WatchEntry::default()
            },
        };
        for p in parts {
            match p {
                "v2" => spec.entry.version = 2,
                "v3" => spec.entry.version = 3,
                "ipv6" => spec.family = FAMILY_V6,
                "unicast" => spec.entry.flags |= validate::WATCH_UNICAST,
                _ => match p.strip_prefix("pass=") {
                    Some(pass) if pass.len() <= 8 => {
                        spec.entry.auth_type = 1;
                        spec.entry.auth[..pass.len()].copy_from_slice(pass.as_bytes());
                    }
                    _ => {
                        return Err(format!(
                            "{s:?}: unknown part {p:?} (v2, v3, ipv6, unicast, pass=...)"
                        ));
                    }
                },
            }
        }
        Ok(spec)
    }
}

/// Attaches the program to the interface (or opens the raw socket) and prints what it
/// reports until Ctrl-C, SIGTERM, `count` records or `duration`; detaches on the way out.
pub async fn run(opts: TraceOptions) -> anyhow::Result<()> {
    let index = xdp::ifindex(&opts.interface)?;
    let (tx, mut rx) = mpsc::channel(1024);
    let (program, reader, path) = match opts.mode {
        Some(mode) => {
            let mut program = xdp::XdpProgram::load(opts.pin_dir.as_deref(), false)?;
            let mode = program.attach(&opts.interface, mode)?;
            program.set_settings(Settings {
                trace_all: u8::from(opts.all),
                trace_valid: 1,
                _pad: [0; 6],
            })?;
            for w in &opts.watch {
                program.watch(key(index, w), w.entry)?;
            }
            let events = program.take_events()?;
            let reader = tokio::spawn(async move {
                if let Err(e) = ring::forward(events, tx).await {
                    tracing::error!("ring buffer: {e:#}");
                }
            });
            (Some(program), reader, format!("XDP, {mode:?} mode"))
        }
        None => {
            let mut raw = rawsock::RawReceiver::open(index)?;
            raw.judge.trace_all = opts.all;
            raw.judge.trace_valid = true;
            for w in &opts.watch {
                raw.judge.watch.insert(key(index, w), w.entry);
            }
            let reader = tokio::spawn(async move {
                if let Err(e) = raw.run(tx).await {
                    tracing::error!("raw socket: {e}");
                }
            });
            (None, reader, "raw socket".to_owned())
        }
    };
    eprintln!(
        "vigil trace: watching {} ({path}){}; Ctrl-C to stop",
        opts.interface,
        if opts.all { ", dropped frames too" } else { "" }
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut seen = 0u64;
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { break };
                if opts.json {
                    println!("{}", record.to_json());
                } else {
                    println!("{} {record}", opts.interface);
                }
                seen += 1;
                if opts.count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut deadline => break,
        }
    }
    reader.abort();
    drop(program);
    eprintln!(
        "vigil trace: {seen} records; detached from {}",
        opts.interface
    );
    Ok(())
}

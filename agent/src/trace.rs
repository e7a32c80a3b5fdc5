//! `vigil trace`: a live view of the VRRP frames the XDP program sees on an interface.

use std::time::Duration;

use tokio::sync::mpsc;
use vigil_common::Settings;

use crate::datapath::{ring, xdp};

/// Options of `vigil trace`.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Interface to watch.
    pub interface: String,
    /// Show dropped frames too.
    pub all: bool,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Attach mode.
    pub mode: xdp::AttachMode,
    /// Stop after this many records (for scripts and tests).
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// Attaches the program to the interface and prints what it reports until Ctrl-C,
/// SIGTERM, `count` records or `duration`; detaches on the way out.
pub async fn run(opts: TraceOptions) -> anyhow::Result<()> {
    let mut program = xdp::XdpProgram::load(None)?;
    let mode = program.attach(&opts.interface, opts.mode)?;
    program.set_settings(Settings {
        trace_all: u8::from(opts.all),
        trace_valid: 1,
        _pad: [0; 6],
    })?;
    let events = program.take_events()?;
    let (tx, mut rx) = mpsc::channel(1024);
    let reader = tokio::spawn(ring::forward(events, tx));
    eprintln!(
        "vigil trace: watching {} ({mode:?} mode){}; Ctrl-C to stop",
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

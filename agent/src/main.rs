//! The `vigil` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Default configuration file.
const DEFAULT_CONFIG: &str = "/etc/vigil/vigil.toml";

/// VRRP high-availability agent with an XDP fast path.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent in the foreground.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a configuration file.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show the state of a running agent.
    Status {
        /// Control socket of the agent.
        #[arg(long, default_value = "/run/vigil/vigil.sock")]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live view of the VRRP adverts the XDP program sees on an interface.
    Trace {
        /// Interface to watch.
        #[arg(short, long)]
        interface: String,
        /// Also show packets the program drops, with the reason.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Datapath: auto (XDP driver mode, then skb), driver, skb, or off (raw socket).
        #[arg(long, default_value = "auto", value_parser = ["auto", "driver", "skb", "off"])]
        mode: String,
        /// Pin the program's maps in this directory (a bpffs) while tracing.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Watch a virtual router as the agent would: VRID[/v2|/v3][/ipv6][/pass=SECRET][/unicast].
        #[arg(long)]
        watch: Vec<vigil::trace::WatchSpec>,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. "10s").
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// Convert a keepalived.conf to vigil TOML (stdout); warnings go to stderr.
    ImportKeepalived {
        /// keepalived configuration file.
        file: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// Shell to generate completions for.
        shell: String,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs an async command on a small runtime; errors print as `vigil: ...` with exit 2.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Trace {
            interface,
            all,
            json,
            mode,
            pin_dir,
            watch,
            count,
            duration,
        } => {
            use vigil::datapath::xdp::AttachMode;
            let mode = match mode.as_str() {
                "driver" => Some(AttachMode::Driver),
                "skb" => Some(AttachMode::Skb),
                "off" => None,
                _ => Some(AttachMode::Auto),
            };
            block_on(vigil::trace::run(vigil::trace::TraceOptions {
                interface,
                all,
                json,
                mode,
                pin_dir,
                watch,
                count,
                duration,
            }))
        }
        other => {
            eprintln!("vigil: {other:?} is not implemented yet");
            ExitCode::from(2)
        }
    }
}

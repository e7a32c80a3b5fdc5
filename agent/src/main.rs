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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        other => {
            eprintln!("vigil: {other:?} is not implemented yet");
            ExitCode::from(2)
        }
    }
}

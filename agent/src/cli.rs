//! The command line definition, shared by `main.rs`, completions and the man page.

use std::io;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::config::DEFAULT_PATH;

/// VRRP high-availability agent with an XDP fast path.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands (their names are part of the user interface: README, man pages).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a configuration file.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_PATH)]
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
    /// Make a running agent re-read its file; prints what changed, or the errors (exit 1).
    Reload {
        /// Control socket of the agent.
        #[arg(long, default_value = "/run/vigil/vigil.sock")]
        socket: PathBuf,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Live view of the VRRP adverts the XDP program sees on an interface, or with
    /// --bfd of the running agent's BFD sessions there.
    Trace {
        /// Interface to watch.
        #[arg(short, long)]
        interface: String,
        /// Also show packets the program drops, with the reason.
        #[arg(long)]
        all: bool,
        /// Show the running agent's BFD sessions on the interface instead (the sessions,
        /// then every state change, start, re-timing and removal), read from its
        /// control socket; nothing is attached.
        #[arg(long)]
        bfd: bool,
        /// Control socket of the agent (with --bfd).
        #[arg(long, default_value = "/run/vigil/vigil.sock")]
        socket: PathBuf,
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
        watch: Vec<crate::trace::WatchSpec>,
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
        /// Read the file as keepalived started with `-i ID` does (by default keepalived
        /// uses the host name): `@ID` lines apply, other `@id` lines are left out. Without
        /// it every `@id` line is warned about and left out.
        #[arg(long, value_name = "ID")]
        config_id: Option<String>,
    },
    /// Print shell completions.
    Completions {
        /// Shell to generate completions for.
        shell: Shell,
    },
    /// Write the man pages (for packaging; `cargo xtask` calls it).
    #[command(hide = true)]
    Manpage {
        /// Directory for vigil.1 and one page per subcommand; without it, vigil.1 goes to
        /// stdout.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Completions for `shell`, as a script.
pub fn completions(shell: Shell) -> Vec<u8> {
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vigil", &mut out);
    out
}

/// The vigil(1) man page in roff.
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    Ok(buf)
}

/// Write vigil.1 and vigil-SUBCOMMAND.1 pages into `dir`.
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn man_page_mentions_every_subcommand() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        for sub in [
            "run",
            "check",
            "status",
            "trace",
            "import\\-keepalived",
            "completions",
            "reload",
        ] {
            assert!(page.contains(sub), "{sub} missing");
        }
        assert!(
            !page.contains("manpage"),
            "hidden subcommand leaked into the page"
        );
    }

    #[test]
    fn completions_for_bash() {
        let text = String::from_utf8(completions(Shell::Bash)).unwrap();
        assert!(text.contains("import-keepalived"));
    }
}

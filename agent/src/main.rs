//! The `vigil` command line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use vigil::cli::{Cli, Command};

/// Exit code for a configuration that cannot be used (README: 1 bad configuration).
const EXIT_BAD_CONFIG: u8 = 1;
/// Exit code for a runtime failure.
const EXIT_RUNTIME: u8 = 2;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if vigil::logging::to_journal() {
        // journald stamps each line itself and reads its priority from a `<N>` prefix,
        // so `journalctl -p warning` finds vigil's warnings.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(vigil::logging::SyslogPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// A single-threaded runtime: the agent's loop is one task by design, and the other
/// commands are small.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("vigil: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

/// Runs an async command on a small runtime; errors print as `vigil: ...` with exit 2.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command whose output is piped into `head` should end quietly when the pipe
        // closes, as other tools do. The daemon keeps Rust's default (EPIPE as an error),
        // so a control client hanging up never kills it.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_logging();
    match cli.command {
        Command::Trace {
            interface,
            bfd: true,
            socket,
            json,
            count,
            duration,
            ..
        } => block_on(vigil::trace::bfd::run(vigil::trace::bfd::Options {
            interface,
            socket,
            json,
            count,
            duration,
        })),
        Command::Trace {
            interface,
            all,
            json,
            mode,
            pin_dir,
            watch,
            count,
            duration,
            ..
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

        Command::Check { config } => check(&config),
        Command::Run { config } => run(&config),
        Command::Status { socket, json } => block_on(vigil::control::status(&socket, json)),
        Command::Reload { socket, json } => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(vigil::control::reload(&socket, json)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(EXIT_BAD_CONFIG),
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::ImportKeepalived { file, config_id } => {
            import_keepalived(&file, config_id.as_deref())
        }
        Command::Completions { shell } => {
            out(&vigil::cli::completions(shell));
            ExitCode::SUCCESS
        }
        Command::Manpage { out_dir } => manpage(out_dir.as_deref()),
    }
}

/// `vigil run`: exit 1 for a bad config, 2 for a runtime failure, 0 after SIGTERM.
fn run(path: &std::path::Path) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(vigil::daemon::run(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(vigil::daemon::RunError::Config(e)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("vigil: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Write to stdout. A closed pipe (`vigil ... | head`) is not an error worth a panic,
/// which is what `print!` would do.
fn out(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Write a line to stderr, ignoring a closed stderr for the same reason.
fn err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `vigil check`: one line per instance and exit 0, or every error and exit 1.
fn check(path: &Path) -> ExitCode {
    match vigil::config::load(path) {
        Ok(config) => {
            let mut text = String::new();
            for (name, instance) in &config.instances {
                text.push_str(&instance.summary(name));
                text.push('\n');
            }
            text.push_str(&format!(
                "{}: OK ({} instance(s), {} script(s))\n",
                path.display(),
                config.instances.len(),
                config.scripts.len()
            ));
            out(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            err(&e.to_string());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `vigil import-keepalived`: TOML on stdout, warnings on stderr; exit 1 when the file
/// cannot be read or parsed, or when the result would not pass `vigil check`.
fn import_keepalived(file: &Path, config_id: Option<&str>) -> ExitCode {
    match vigil::keepalived::import_file_for(file, config_id) {
        Ok(import) => {
            out(import.toml.as_bytes());
            for w in &import.warnings {
                err(&format!("warning: {w}"));
            }
            match import.check {
                None => ExitCode::SUCCESS,
                Some(errors) => {
                    err(
                        "error: the converted configuration does not pass `vigil check` yet; fix these by hand:",
                    );
                    err(&errors.to_string());
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Err(e) => {
            err(&format!("error: {e}"));
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Hidden `vigil manpage`: vigil.1 on stdout, or all pages into a directory.
fn manpage(out_dir: Option<&Path>) -> ExitCode {
    let result = match out_dir {
        Some(dir) => vigil::cli::write_man_pages(dir),
        None => vigil::cli::man_page().map(|page| out(&page)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err(&format!("vigil: writing the man pages: {e}"));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

//! The `vigil` command line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use vigil::cli::{Cli, Command};

/// Exit code for a configuration that cannot be used (DESIGN.md: 1 bad config).
const EXIT_BAD_CONFIG: u8 = 1;
/// Exit code for a runtime failure.
const EXIT_RUNTIME: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::ImportKeepalived { file } => import_keepalived(&file),
        Command::Completions { shell } => {
            out(&vigil::cli::completions(shell));
            ExitCode::SUCCESS
        }
        Command::Manpage { out_dir } => manpage(out_dir.as_deref()),
        other => {
            eprintln!("vigil: {other:?} is not implemented yet");
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
fn import_keepalived(file: &Path) -> ExitCode {
    match vigil::keepalived::import_file(file) {
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

//! The `vigil` command line.

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
            vigil::cli::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpage { out_dir } => manpage(out_dir.as_deref()),
        other => {
            eprintln!("vigil: {other:?} is not implemented yet");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `vigil check`: one line per instance and exit 0, or every error and exit 1.
fn check(path: &std::path::Path) -> ExitCode {
    match vigil::config::load(path) {
        Ok(config) => {
            for (name, instance) in &config.instances {
                println!("{}", instance.summary(name));
            }
            println!(
                "{}: OK ({} instance(s), {} script(s))",
                path.display(),
                config.instances.len(),
                config.scripts.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `vigil import-keepalived`: TOML on stdout, warnings on stderr; exit 1 when the file
/// cannot be read or parsed, or when the result would not pass `vigil check`.
fn import_keepalived(file: &std::path::Path) -> ExitCode {
    match vigil::keepalived::import_file(file) {
        Ok(import) => {
            print!("{}", import.toml);
            for w in &import.warnings {
                eprintln!("warning: {w}");
            }
            match import.check {
                None => ExitCode::SUCCESS,
                Some(errors) => {
                    eprintln!(
                        "error: the converted configuration does not pass `vigil check` yet; fix these by hand:"
                    );
                    eprintln!("{errors}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn manpage(out_dir: Option<&std::path::Path>) -> ExitCode {
    use std::io::Write;
    let result = match out_dir {
        Some(dir) => vigil::cli::write_man_pages(dir),
        None => vigil::cli::man_page().and_then(|page| std::io::stdout().write_all(&page)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: writing the man page: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

//! `xrdtest`: the command-line client of the xrdtest framework.

mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// xrdtest: distributed system tests on clusters of real and virtual machines.
///
/// A master runs test suites as sessions of barrier-synchronized stages across slaves.
/// This client checks definitions and talks to a master.
#[derive(Parser, Debug)]
#[command(name = "xrdtest", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check suite and cluster definitions and report every problem found.
    ///
    /// With one DIR, DIR is a definitions repository holding `suites/` and `clusters/`.
    /// With two, they are the suites folder and the clusters folder. With none, the
    /// current folder is the repository. Exits 0 only when every definition is valid.
    Validate(validate::ValidateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xrdtest: {err:#}");
            ExitCode::from(2)
        }
    }
}

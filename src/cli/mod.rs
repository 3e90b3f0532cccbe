//! The command-line interface: one file per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad input (unreadable or invalid files, bad flags).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when a run failed a `--fail-on` condition.
pub const EXIT_FAILED: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "lbsim",
    version,
    about = "Measure and explain rare races in gRPC-Go's priority load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version and the list of variants.
    Variants,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Variants => {
            println!("lbsim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

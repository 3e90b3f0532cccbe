//! The `lbsim` command: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    lbsim::cli::main()
}

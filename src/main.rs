//! The `lbsim` command: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    lbsim::cli::main()
}

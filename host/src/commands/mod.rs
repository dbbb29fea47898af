//! The subcommands. Each returns its exit status here, and `main` returns
//! it: errors are said in one place, the same way for every command.

pub mod bench;
pub mod check;
pub mod fluent_bit;
pub mod route;
pub mod run;
pub mod selftest;

use crate::cli::Command;
use std::process::ExitCode;

pub fn execute(command: Command) -> ExitCode {
    match command {
        Command::Run(args) => finish(run::run(args)),
        Command::Demo(args) => finish(run::demo(args)),
        Command::Route(args) => finish(route::run(args)),
        Command::Bench(args) => finish(bench::command(args)),
        Command::Check(args) => check::run(&args),
        Command::Selftest(args) => selftest::command(&args),
        Command::FluentBit { command } => finish(fluent_bit::run(&command)),
    }
}

/// The exit status of a command that worked or failed with an error.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

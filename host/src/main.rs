//! `clawwatch`: tags every agent log record with the agent it belongs to and a
//! policy verdict, through the detection engine compiled to WebAssembly.
//!
//! `main` parses the command line and returns the command's exit status;
//! everything else lives in the modules: `source` → `stage` → `sink` joined
//! by `pipeline`, the engine behind `component`, the commands in `commands`;
//! `group` runs one of several instances sharing Kafka topics.

mod cache;
mod cli;
mod commands;
mod component;
mod forward_codec;
mod group;
mod metrics;
mod pipeline;
mod sink;
mod source;
mod stage;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in collected logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    commands::execute(cli::Cli::parse().command)
}

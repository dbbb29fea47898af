//! clawwatch's detection engine.
//!
//! Plain Rust with no I/O and no clock: records in, the same records tagged with
//! their agent and a policy verdict out. The same code is an ordinary library
//! (native tests, the host's benchmark) and, through [`component`], the
//! WebAssembly component the `clawwatch` host loads.

mod activity;
pub mod bounded;
mod clock;
mod direction;
mod dns_map;
mod egress;
mod engine;
mod flood;
pub mod incidents;
pub mod output;
pub mod policy;
pub mod record;
pub mod registry;
pub mod rules;
pub mod selftest;
pub mod siem;
pub mod time;

pub use engine::{Engine, OutputLine, StateError, Stats};
pub use policy::{Policy, PolicyError};

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod component;

#[cfg(all(target_arch = "wasm32", target_env = "p1"))]
mod fluent_bit;

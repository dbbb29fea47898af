//! clawwatch's detection engine.
//!
//! Plain Rust with no I/O and no clock: records in, the same records tagged with
//! their agent and a policy verdict out. The same code is an ordinary library
//! (native tests, the host's benchmark) and, through [`component`], the
//! WebAssembly component the `clawwatch` host loads.

pub mod bounded;
mod changes;
mod clock;
mod direction;
mod dns_map;
mod egress;
mod engine;
mod flood;
pub mod incidents;
pub mod name;
pub mod net;
pub mod output;
pub mod policy;
pub mod record;
pub mod registry;
pub mod route;
pub mod rules;
pub mod selftest;
pub mod siem;
mod text;
pub mod time;

pub use engine::{Engine, OutputLine, StateError, Stats};
pub use policy::{Policy, PolicyError};

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod component;

#[cfg(all(target_arch = "wasm32", target_env = "p1"))]
mod fluent_bit;

// Linked for its `memcmp`, which replaces the guest libc's.
#[cfg(target_arch = "wasm32")]
use clawwatch_memcmp as _;

/// The modules from the bottom up: each uses only those before it, so the
/// engine reads one way (network vocabulary, records, policy and state,
/// rules, incidents, output) and a change low down never loops back.
#[cfg(test)]
const LAYERS: &[&str] = &[
    "text",
    "time",
    "name",
    "changes",
    "bounded",
    "net",
    "record",
    "policy",
    "route",
    "registry",
    "clock",
    "direction",
    "dns_map",
    "rules",
    "egress",
    "flood",
    "incidents",
    "output",
    "siem",
    "engine",
    "selftest",
    "component",
    "fluent_bit",
];

#[cfg(test)]
mod layering_tests {
    use super::LAYERS;

    #[test]
    fn modules_use_only_the_layers_below_them() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut wrong = Vec::new();
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel.split(['/', '.']).next().unwrap().to_string();
            if module == "lib" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rank = LAYERS
                .iter()
                .position(|m| *m == module)
                .unwrap_or_else(|| panic!("module `{module}` ({rel}) is not in LAYERS"));
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (at, _) in code.match_indices("crate::") {
                let used: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let Some(used_rank) = LAYERS.iter().position(|m| *m == used) else {
                    continue; // a re-export from lib.rs (`crate::Engine`)
                };
                checked += 1;
                if used_rank > rank {
                    wrong.push(format!("{rel} uses crate::{used}"));
                }
            }
        }
        assert!(checked > 100, "only {checked} uses found");
        assert!(
            wrong.is_empty(),
            "uses against the layering:\n{}",
            wrong.join("\n")
        );
    }
}

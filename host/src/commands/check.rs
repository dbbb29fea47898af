//! `clawwatch check`: validates a policy before it is deployed and lints it.
//! Its exit status is its answer (0 clean, 1 warnings, 2 invalid), so it runs
//! outside the usual error path.

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CheckArgs {
    /// The policy file (TOML).
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// The agent types the fleet runs, comma-separated: profiles none of them uses, and
    /// types without a profile, are reported.
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub agent_types: Option<Vec<String>>,
    /// Output: text for people, json for CI.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

/// `clawwatch check`: its exit status is its answer, so it does not go through `dispatch`.
pub fn run(args: &CheckArgs) -> std::process::ExitCode {
    use clawwatch_plugin::policy::lint::{Level, lint};
    let name = args.policy.display().to_string();
    let result = std::fs::read_to_string(&args.policy)
        .map_err(|e| (None, format!("cannot read it: {e}")))
        .and_then(|text| {
            clawwatch_plugin::Policy::from_toml(&text).map_err(|e| (Some(e.clone()), e.to_string()))
        });
    let json = args.format == "json";
    let (status, output) = match result {
        Err((error, message)) => {
            let out = if json {
                serde_json::json!({"policy": name, "valid": false, "error": {
                    "line": error.as_ref().and_then(|e| e.line), "column": error.as_ref().and_then(|e| e.column),
                    "table": error.as_ref().and_then(|e| e.table.clone()), "message": message,
                }, "findings": []})
                .to_string()
            } else {
                format!("{name}: invalid: {message}")
            };
            (2, out)
        }
        Ok(policy) => {
            let lints = lint(&policy, args.agent_types.as_deref());
            let warnings = lints.iter().filter(|l| l.level == Level::Warning).count();
            let out = if json {
                let findings: Vec<_> = lints.iter().map(|l| serde_json::json!({"level": l.level.as_str(), "code": l.code, "place": l.place, "message": l.message})).collect();
                serde_json::json!({"policy": name, "valid": true, "warnings": warnings, "findings": findings}).to_string()
            } else {
                let mut text: Vec<String> = lints.iter().map(|l| l.to_string()).collect();
                text.push(format!(
                    "{name}: valid, {warnings} warning(s), {} note(s)",
                    lints.len() - warnings
                ));
                text.join("\n")
            };
            (u8::from(warnings > 0), out)
        }
    };
    println!("{output}");
    std::process::ExitCode::from(status)
}

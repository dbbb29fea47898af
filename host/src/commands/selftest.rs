//! `clawwatch selftest`: mutation testing of a policy and the engine together.
//! The trials come from the engine library (`clawwatch_plugin::selftest`); each
//! runs through a fresh engine component, exactly as `run` would judge it.
//! Like `check`, its exit status is its answer: 0 no holes, 1 holes or false
//! alarms, 2 the policy does not load or the engine does not start.

use crate::component::{Limits, Monitor, Runtime};
use clawwatch_plugin::selftest::{Expect, Outcome, Trial, judge, trials};
use std::path::PathBuf;
use std::sync::Arc;

pub struct SelftestOptions {
    pub policy_name: String,
    pub policy_text: String,
    pub component: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    pub json: bool,
    /// List every trial, not only the problems.
    pub verbose: bool,
}

pub fn run(opts: SelftestOptions) -> std::process::ExitCode {
    let policy = match clawwatch_plugin::Policy::from_toml(&opts.policy_text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clawwatch: policy {}: {e}", opts.policy_name);
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match Runtime::load(
        opts.component.as_deref(),
        opts.cache_dir.as_deref(),
        opts.limits.batch_timeout.is_some(),
    ) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("clawwatch: error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut results: Vec<(Trial, Outcome)> = Vec::new();
    for trial in trials(&policy) {
        let mut monitor =
            match Monitor::new(runtime.clone(), &opts.policy_text, opts.limits.clone()) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("clawwatch: {}", e.explain(&opts.policy_name));
                    return std::process::ExitCode::from(2);
                }
            };
        let mut out = monitor.process(trial.records.as_bytes()).ndjson;
        out.extend(monitor.advance_to(trial.advance_to.0).ndjson);
        let outcome = judge(&trial, &out);
        results.push((trial, outcome));
    }
    let holes = results.iter().filter(|(_, o)| *o == Outcome::Hole).count();
    let false_alarms = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::FalseAlarm(_)))
        .count();
    if opts.json {
        let trials: Vec<_> = results
            .iter()
            .map(|(t, o)| {
                let (outcome, rules) = match o {
                    Outcome::Passed(r) if t.expect == Expect::Quiet => ("quiet", r.clone()),
                    Outcome::Passed(r) => ("caught", r.clone()),
                    Outcome::Approved => ("approved", Vec::new()),
                    Outcome::Hole => ("hole", Vec::new()),
                    Outcome::FalseAlarm(r) => ("false_alarm", r.clone()),
                };
                serde_json::json!({
                    "profile": t.profile, "mutation": t.mutation, "behaviour": t.description,
                    "expected_rules": t.expected_rules, "outcome": outcome, "rules": rules,
                    "allowed_by": t.allowed_by,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"policy": opts.policy_name, "trials": trials, "holes": holes, "false_alarms": false_alarms})
        );
    } else {
        for (t, o) in &results {
            let line = match o {
                Outcome::Hole => format!(
                    "HOLE         {:<28} {:<22} {} — {}",
                    t.profile,
                    t.mutation,
                    t.description,
                    match &t.allowed_by {
                        Some(rule) => format!("let through by {rule}"),
                        None => format!(
                            "nothing caught it (expected {})",
                            t.expected_rules.join(" or ")
                        ),
                    }
                ),
                Outcome::FalseAlarm(rules) => format!(
                    "FALSE ALARM  {:<28} {:<22} {} — raised {}",
                    t.profile,
                    t.mutation,
                    t.description,
                    rules.join(", ")
                ),
                _ if !opts.verbose => continue,
                Outcome::Approved => format!(
                    "approved     {:<28} {:<22} {} — allowed by [approvals] or a grant",
                    t.profile, t.mutation, t.description
                ),
                Outcome::Passed(rules) if rules.is_empty() => format!(
                    "quiet        {:<28} {:<22} {}",
                    t.profile, t.mutation, t.description
                ),
                Outcome::Passed(rules) => format!(
                    "caught       {:<28} {:<22} {} — {}{}",
                    t.profile,
                    t.mutation,
                    t.description,
                    rules.join(", "),
                    if t.expected_rules
                        .iter()
                        .any(|e| rules.contains(&e.to_string()))
                    {
                        String::new()
                    } else {
                        format!(
                            " (not by {}, which should have)",
                            t.expected_rules.join(" or ")
                        )
                    }
                ),
            };
            println!("{line}");
        }
        let profiles: std::collections::BTreeSet<&str> =
            results.iter().map(|(t, _)| t.profile.as_str()).collect();
        println!(
            "{}: {} trials over {} profiles: {holes} hole(s), {false_alarms} false alarm(s)",
            opts.policy_name,
            results.len(),
            profiles.len()
        );
    }
    std::process::ExitCode::from(u8::from(holes + false_alarms > 0))
}

/// `clawwatch selftest`: exit 2 when the policy cannot be read.
pub fn command(args: &crate::cli::SelftestArgs) -> std::process::ExitCode {
    let path = args.policy_file.as_ref().or(args.engine.policy.as_ref());
    let (policy_name, policy_text) = match crate::cli::load_policy(path.map(|p| p.as_path())) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("clawwatch: error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    run(SelftestOptions {
        policy_name,
        policy_text,
        component: args.engine.component.clone(),
        cache_dir: args.engine.cache_dir(),
        limits: args.engine.limits(),
        json: args.format == "json",
        verbose: args.verbose,
    })
}

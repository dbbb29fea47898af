//! A Fluent Bit pipeline (tail → wasm filter → output) rendered as Fluent
//! Bit's YAML configuration, for `fluent-bit config` and `bench --fluent-bit`.

use super::POLICY_FILE;
use anyhow::{Result, ensure};
use std::path::{Path, PathBuf};

/// One followed log.
pub struct Input {
    /// The records' format, where their shape does not say; put in the tag.
    pub format: Option<String>,
    pub path: String,
}

impl Input {
    pub fn parse(spec: &str) -> Result<Input> {
        let (format, path) = match spec.split_once('=') {
            Some((format, path)) => (Some(format), path),
            None => (None, spec),
        };
        if let Some(format) = format {
            ensure!(
                clawwatch_plugin::record::FORMAT_NAMES.contains(&format),
                "--input {spec}: `{format}` is no format clawwatch knows (one of: {})",
                clawwatch_plugin::record::FORMAT_NAMES.join(", ")
            );
        }
        ensure!(!path.is_empty(), "--input {spec}: no path");
        let path = if Path::new(path).is_absolute() {
            path.to_string()
        } else {
            std::path::absolute(path)?.display().to_string()
        };
        Ok(Input {
            format: format.map(str::to_string),
            path,
        })
    }

    fn tag(&self) -> String {
        format!("clawwatch.{}", self.format.as_deref().unwrap_or("agents"))
    }
}

pub struct Filter {
    pub module: PathBuf,
    pub function: String,
    /// The directory holding `policy.toml`, given to the module as an accessible path.
    pub policy_dir: Option<PathBuf>,
    /// The WAMR app heap, for a module without its own `malloc` (the no-op one);
    /// `None`: the module's own allocator, bounded by the policy's caps.
    pub heap_size: Option<&'static str>,
}

pub enum Output {
    Stdout,
    /// `clawwatch.ndjson` (every record) and `alerts.ndjson` (alert copies) in this directory.
    Dir(PathBuf),
}

/// A Fluent Bit pipeline: tail → (wasm filter) → output.
pub struct Pipeline {
    pub inputs: Vec<Input>,
    pub filter: Option<Filter>,
    pub output: Output,
    pub flush_secs: f64,
    /// Copy alerts (and records carrying due findings) to an output of their own.
    pub alerts: bool,
}

/// A YAML single-quoted scalar: nothing in it is special but the quote itself.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Pipeline {
    /// The configuration, in Fluent Bit's YAML format (which, unlike the classic
    /// one, holds the JSON parser in the same file).
    pub fn render(&self) -> String {
        let mut y = String::new();
        y.push_str(
            "# clawwatch in Fluent Bit (v4.1 or newer): every record leaves the wasm filter\n\
             # tagged with its agent and verdict. Run: fluent-bit -c THIS_FILE\n",
        );
        y.push_str(&format!(
            "service:\n  flush: {}\n  log_level: warn\n\n",
            self.flush_secs
        ));
        y.push_str(
            "parsers:\n  # A line that is not JSON reaches the filter as {\"log\": line} and is tagged `error`.\n  - name: clawwatch_json\n    format: json\n\npipeline:\n  inputs:\n",
        );
        for input in &self.inputs {
            y.push_str(&format!(
                "    - name: tail\n      path: {}\n      tag: {}\n      parser: clawwatch_json\n      read_from_head: true\n      # Lines up to clawwatch's own 1 MiB limit; Fluent Bit's tail skips longer ones.\n      buffer_max_size: 1M\n      skip_long_lines: true\n      # Bounded memory: the input pauses (nothing lost) while this much waits.\n      mem_buf_limit: 64M\n",
                quoted(&input.path),
                input.tag()
            ));
        }
        if self.filter.is_some() || self.alerts {
            y.push_str("\n  filters:\n");
        }
        if let Some(f) = &self.filter {
            y.push_str(&format!(
                "    - name: wasm\n      match: 'clawwatch.*'\n      wasm_path: {}\n      function_name: {}\n      event_format: json\n",
                quoted(&f.module.display().to_string()),
                f.function
            ));
            if let Some(dir) = &f.policy_dir {
                y.push_str(&format!(
                    "      # The module reads {POLICY_FILE} from this directory.\n      accessible_paths: {}\n",
                    quoted(&dir.display().to_string())
                ));
            }
            match f.heap_size {
                Some(heap) => y.push_str(&format!("      wasm_heap_size: {heap}\n")),
                None => y.push_str(
                    "      # WAMR ignores wasm_heap_size for a module with its own malloc (this one):\n      # the engine's memory is bounded by the policy's caps.\n",
                ),
            }
            y.push_str("      wasm_stack_size: 8M\n");
        }
        if self.alerts {
            // rewrite_tag re-emits a copy under the new tag (keep = true leaves the
            // record itself in place); `alert.*` is not matched by the wasm filter again.
            y.push_str(
                "    - name: rewrite_tag\n      match: 'clawwatch.*'\n      rule:\n        - '$clawwatch[''verdict''] ^alert$ alert.$TAG true'\n        - '$clawwatch[''due''][0][''rule''] ^. alert.$TAG true'\n",
            );
        }
        y.push_str("\n  outputs:\n");
        let outputs: Vec<(&str, &str)> = if self.alerts {
            vec![
                ("clawwatch.*", "clawwatch.ndjson"),
                ("alert.*", "alerts.ndjson"),
            ]
        } else {
            vec![("*", "clawwatch.ndjson")]
        };
        for (pattern, file) in outputs {
            match &self.output {
                Output::Stdout => y.push_str(&format!(
                    "    - name: stdout\n      match: '{pattern}'\n      format: json_lines\n"
                )),
                Output::Dir(dir) => y.push_str(&format!(
                    "    - name: file\n      match: '{pattern}'\n      path: {}\n      file: {file}\n      format: plain\n",
                    quoted(&dir.display().to_string())
                )),
            }
        }
        y
    }
}

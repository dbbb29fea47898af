//! Policy errors that point at the exact place in the policy text.

use std::fmt;

/// A policy that cannot be loaded: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line of the offending key or value, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// The table the problem is in, e.g. `agent_profile."research_agent"`.
    pub table: Option<String>,
    /// What is wrong, naming the key and, where possible, the fix.
    pub message: String,
}

impl PolicyError {
    pub fn at(text: &str, offset: Option<usize>, message: impl Into<String>) -> PolicyError {
        let message = message.into();
        let Some(offset) = offset.map(|o| o.min(text.len())) else {
            return PolicyError {
                line: None,
                column: None,
                table: None,
                message,
            };
        };
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        PolicyError {
            line: Some(line as u32),
            column: Some(column as u32),
            table: enclosing_table(before),
            message,
        }
    }
}

/// The last `[table]` header before the error: toml's messages name the key
/// but not the table it sits in, which is what a reader looks for.
fn enclosing_table(before: &str) -> Option<String> {
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[[") && l.contains(']'))
        .map(|l| {
            let end = l.rfind(']').unwrap_or(l.len());
            l[1..end].trim().to_string()
        })
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}")?,
            (Some(line), None) => write!(f, "line {line}")?,
            _ => f.write_str("policy")?,
        }
        if let Some(table) = &self.table {
            write!(f, " (in [{table}])")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_column_and_table() {
        let text = "[monitor]\nagent_subnets = []\n\n[agent_profile.\"x\"]\nbogus = 1\n";
        let e = PolicyError::at(text, text.find("bogus"), "unknown field `bogus`");
        assert_eq!((e.line, e.column), (Some(5), Some(1)));
        assert_eq!(e.table.as_deref(), Some("agent_profile.\"x\""));
        assert_eq!(
            e.to_string(),
            "line 5, column 1 (in [agent_profile.\"x\"]): unknown field `bogus`"
        );
    }
}

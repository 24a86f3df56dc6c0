//! TAP version 14, as the MoQ interop runner reads it: `TAP version 14`, a plan `1..N`, then
//! per case `ok N - name` or `not ok N - name` followed by a YAML block (`  ---` ... `  ...`)
//! whose `duration_ms` and `message` say how long it took and what happened.
//!
//! [`render`] writes Banyan's report; [`parse`] reads any producer's (Banyan's or a peer
//! client's), keeping the fields the matrix needs.

use std::fmt::Write as _;
use std::time::Duration;

/// One reported case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapResult {
    /// The case name after `- `, without any `# directive`.
    pub name: String,
    /// `ok` (true) or `not ok` (false).
    pub passed: bool,
    /// The `# SKIP` / `# TODO` / other directive text, if any (e.g. `COMPAT`).
    pub directive: Option<String>,
    /// `duration_ms` from the YAML block.
    pub duration_ms: Option<u64>,
    /// `message` from the YAML block.
    pub message: Option<String>,
}

/// Why a TAP document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// No `TAP version 14` line.
    #[error("no \"TAP version 14\" line (first line {0:?})")]
    Version(String),
    /// No `1..N` plan line.
    #[error("no plan line (1..N)")]
    NoPlan,
    /// The plan says N cases but a different number of result lines followed.
    #[error("plan says {planned} cases, {found} reported")]
    PlanMismatch {
        /// N from `1..N`.
        planned: usize,
        /// Result lines found.
        found: usize,
    },
}

/// The report for `results` (name, passed, duration, message), in order.
pub fn render<'a>(results: impl IntoIterator<Item = (&'a str, bool, Duration, &'a str)>) -> String {
    let results: Vec<_> = results.into_iter().collect();
    let mut out = String::from("TAP version 14\n");
    let _ = writeln!(out, "1..{}", results.len());
    for (i, (name, passed, duration, message)) in results.into_iter().enumerate() {
        let status = if passed { "ok" } else { "not ok" };
        let _ = writeln!(out, "{status} {} - {name}", i + 1);
        out.push_str("  ---\n");
        let _ = writeln!(out, "  duration_ms: {}", duration.as_millis());
        let _ = writeln!(out, "  message: {}", yaml_string(message));
        out.push_str("  ...\n");
    }
    out
}

/// Read a TAP 14 document: every result line with its YAML fields. Output before the
/// `TAP version 14` line and lines that are neither (comments, pragmas) are ignored.
pub fn parse(text: &str) -> Result<Vec<TapResult>, TapError> {
    // Some producers print progress on stdout before the report: it starts at its version line.
    let mut lines = text.lines().skip_while(|l| l.trim() != "TAP version 14");
    if lines.next().is_none() {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        return Err(TapError::Version(first.to_string()));
    }
    let mut planned = None;
    let mut results: Vec<TapResult> = Vec::new();
    let mut in_yaml = false;
    for line in lines {
        if in_yaml {
            let field = line.trim();
            if field == "..." {
                in_yaml = false;
            } else if let (Some(result), Some((key, value))) = (results.last_mut(), field.split_once(':')) {
                let value = value.trim();
                match key {
                    "duration_ms" => result.duration_ms = value.parse::<f64>().ok().map(|ms| ms as u64),
                    "message" => result.message = Some(yaml_scalar(value)),
                    _ => {}
                }
            }
            continue;
        }
        if line.trim() == "---" && !results.is_empty() {
            in_yaml = true;
        } else if let Some(n) = line.strip_prefix("1..") {
            let count = n.split_whitespace().next().unwrap_or_default();
            planned = count.parse::<usize>().ok();
        } else if let Some(result) = result_line(line) {
            results.push(result);
        }
    }
    let planned = planned.ok_or(TapError::NoPlan)?;
    if planned != results.len() {
        return Err(TapError::PlanMismatch {
            planned,
            found: results.len(),
        });
    }
    Ok(results)
}

/// `ok N - name # directive` or `not ok N - name`.
fn result_line(line: &str) -> Option<TapResult> {
    let (passed, rest) = if let Some(rest) = line.strip_prefix("not ok ") {
        (false, rest)
    } else {
        (true, line.strip_prefix("ok ")?)
    };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    number.parse::<usize>().ok()?;
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest.split_once(" # ") {
        Some((name, directive)) => (name, Some(directive.trim().to_string())),
        None => (rest, None),
    };
    Some(TapResult {
        name: name.trim().to_string(),
        passed,
        directive,
        duration_ms: None,
        message: None,
    })
}

/// A YAML double-quoted scalar (JSON string syntax, which YAML accepts).
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// A YAML scalar's text: double-quoted (JSON syntax) unescaped, anything else as written.
fn yaml_scalar(value: &str) -> String {
    if value.starts_with('"') {
        if let Ok(text) = serde_json::from_str::<String>(value) {
            return text;
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_round_trips() {
        let text = render([
            ("setup-only", true, Duration::from_millis(12), "SETUP exchanged"),
            (
                "fetch",
                false,
                Duration::from_millis(3400),
                "FETCH: refused: \"x\"\nline two",
            ),
        ]);
        assert!(text.starts_with("TAP version 14\n1..2\nok 1 - setup-only\n  ---\n  duration_ms: 12\n"));
        let parsed = parse(&text).unwrap();
        assert_eq!(
            parsed,
            vec![
                TapResult {
                    name: "setup-only".into(),
                    passed: true,
                    directive: None,
                    duration_ms: Some(12),
                    message: Some("SETUP exchanged".into()),
                },
                TapResult {
                    name: "fetch".into(),
                    passed: false,
                    directive: None,
                    duration_ms: Some(3400),
                    message: Some("FETCH: refused: \"x\"\nline two".into()),
                },
            ]
        );
    }

    #[test]
    fn reads_directives_comments_and_extra_fields() {
        let text = "TAP version 14\n# date: 2026-01-01\n1..2\nok 1 - a # COMPAT\n  ---\n  duration_ms: 5.7\n  \
                    sessions:\n    client:\n      transport: \"quic\"\n  message: plain words\n  ...\nnot ok 2 - b\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed[0].directive.as_deref(), Some("COMPAT"));
        assert_eq!(parsed[0].duration_ms, Some(5));
        assert_eq!(parsed[0].message.as_deref(), Some("plain words"));
        assert!(!parsed[1].passed);
        assert_eq!(parsed[1].message, None);
    }

    #[test]
    fn refuses_what_is_not_a_complete_report() {
        assert!(matches!(
            parse("hello\n1..1\nok 1 - a\n"),
            Err(TapError::Version(_))
        ));
        let after_progress = parse("  Sent: 11 objects\nTAP version 14\n1..1\nok 1 - a\n").unwrap();
        assert_eq!(after_progress[0].name, "a");
        assert_eq!(parse("TAP version 14\nok 1 - a\n"), Err(TapError::NoPlan));
        assert_eq!(
            parse("TAP version 14\n1..2\nok 1 - a\n"),
            Err(TapError::PlanMismatch { planned: 2, found: 1 })
        );
    }
}

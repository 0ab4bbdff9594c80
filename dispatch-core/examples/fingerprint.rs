//! Normalise and fingerprint error messages, one JSON object per line.
//!
//! ```text
//! $ echo '{"source":"billing","feature":"charge","msg":"Order 123456 failed"}' \
//!     | cargo run -q -p dispatch-core --example fingerprint
//! {"normalized":"Order * failed","fingerprint":"…"}
//! ```
//!
//! Each input line is `{"source": …, "feature": …, "msg": …}` (strings; other fields are ignored)
//! and gives one output line, `{"normalized": …, "fingerprint": …}`, or `{"error": "line N: …"}`
//! when the line is not usable; processing then goes on. Blank lines are skipped (but counted).
//! The exit code is 0 unless writing to stdout fails.

use dispatch_core::event::fingerprint_message;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;

/// The output line for input line `line_no` (1-based), or `None` for a blank line.
fn process_line(line_no: usize, line: &str) -> Option<String> {
    if line.trim().is_empty() {
        return None;
    }
    Some(match fields(line) {
        Ok([source, feature, msg]) => {
            let (normalized, fp) = fingerprint_message(&source, &feature, &msg);
            format!(
                r#"{{"normalized":{},"fingerprint":{}}}"#,
                Value::String(normalized),
                Value::String(fp.as_str().to_owned())
            )
        }
        Err(e) => error_line(line_no, &e),
    })
}

fn error_line(line_no: usize, error: &str) -> String {
    format!(
        r#"{{"error":{}}}"#,
        Value::String(format!("line {line_no}: {error}"))
    )
}

/// Parses the line and takes out its three string fields, `source`, `feature` and `msg`.
fn fields(line: &str) -> Result<[String; 3], String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("expected a JSON object".to_owned());
    };
    let mut take = |name: &str| match obj.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("field `{name}` is not a string")),
        None => Err(format!("missing field `{name}`")),
    };
    Ok([take("source")?, take("feature")?, take("msg")?])
}

fn run() -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        // Flush before a read that may block, so a line-at-a-time producer sees its answers.
        if input.buffer().is_empty() {
            out.flush()?;
        }
        buf.clear();
        line_no += 1;
        let reply = match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => match std::str::from_utf8(&buf) {
                Ok(line) => process_line(line_no, line),
                Err(e) => Some(error_line(line_no, &format!("not UTF-8: {e}"))),
            },
            Err(e) => {
                // Stdin itself failed: say so and stop; only stdout failing is an exit error.
                writeln!(
                    out,
                    "{}",
                    error_line(line_no, &format!("cannot read input: {e}"))
                )?;
                break;
            }
        };
        if let Some(reply) = reply {
            writeln!(out, "{reply}")?;
        }
    }
    out.flush()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be gone too; nothing more to do then.
            let _ = writeln!(io::stderr(), "fingerprint: writing output failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::process_line;

    #[test]
    fn good_bad_and_blank_lines() {
        let ok = process_line(
            1,
            r#"{"source":"s","feature":"f","msg":"Order 123456 failed"}"#,
        );
        assert!(
            ok.is_some_and(|l| l.starts_with(r#"{"normalized":"Order * failed","fingerprint":""#))
        );
        assert_eq!(process_line(2, "  \r\n"), None);
        assert_eq!(
            process_line(3, r#"{"source":"s","feature":"f"}"#).as_deref(),
            Some(r#"{"error":"line 3: missing field `msg`"}"#)
        );
        assert_eq!(
            process_line(4, r#"{"source":"s","feature":1,"msg":"m"}"#).as_deref(),
            Some(r#"{"error":"line 4: field `feature` is not a string"}"#)
        );
        assert_eq!(
            process_line(5, "[1]").as_deref(),
            Some(r#"{"error":"line 5: expected a JSON object"}"#)
        );
        assert!(
            process_line(6, "{oops")
                .is_some_and(|l| l.starts_with(r#"{"error":"line 6: not JSON: "#))
        );
    }
}

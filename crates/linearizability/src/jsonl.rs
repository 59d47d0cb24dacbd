//! JSON Lines persistence for histories: one operation per line.
//!
//! Histories are written by test harnesses (possibly in other languages) and
//! read back by `keel-lincheck`, so the format is flat, self-describing and
//! forgiving only where there is no ambiguity. Field reference:
//!
//! | field       | type            | meaning                                               |
//! |-------------|-----------------|-------------------------------------------------------|
//! | `client`    | integer         | issuing client                                        |
//! | `op`        | string          | `"put"`, `"get"`, `"delete"` or `"cas"`               |
//! | `key`       | string          | the key                                               |
//! | `value`     | string or null  | put: value written (required); cas: new value, null = delete |
//! | `expected`  | string or null  | cas only: expected value, null = key absent           |
//! | `output`    | see below       | only with outcome `"ok"`                              |
//! | `invoke_ns` | integer         | invocation time                                       |
//! | `return_ns` | integer or null | return time, null if it never returned                |
//! | `outcome`   | string          | `"ok"`, `"failed"` or `"unknown"`                     |
//!
//! `output` for an `"ok"` get is the value read, or `null` for an absent key
//! (the field is required, so a forgotten output is not mistaken for
//! "absent"); for a cas it is a boolean; put and delete have none. Missing
//! optional fields mean `null`; unknown fields are rejected so typos such
//! as `retrun_ns` do not silently change the meaning of a history.

use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::history::{History, HistoryError, Operation, Outcome};
use crate::model::{OpKind, Output};

/// Why a JSON Lines history could not be read. Every variant names the
/// 1-based line it is about.
#[derive(Debug, Error)]
pub enum ParseError {
    /// Reading the input failed (including invalid UTF-8).
    #[error("line {line}: cannot read input: {source}")]
    Io {
        line: usize,
        #[source]
        source: io::Error,
    },
    /// The line is not a JSON object of the expected shape.
    #[error("line {line}, column {}: {}", source.column(), without_position(source))]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The line is well-formed JSON but does not describe a valid operation.
    #[error("line {line}: {problem}")]
    Invalid {
        line: usize,
        #[source]
        problem: InvalidOperation,
    },
}

/// What makes a well-formed line not an operation: a rule across its
/// fields that it breaks, with the values at fault.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidOperation {
    #[error("\"expected\" is only allowed for cas, not {op}")]
    ExpectedOutsideCas { op: &'static str },
    #[error("a put needs a string \"value\"")]
    PutWithoutValue,
    #[error("a {op} takes no \"value\"")]
    ValueNotTaken { op: &'static str },
    #[error("\"output\" is only allowed when \"outcome\" is \"ok\"")]
    OutputWithoutOk,
    #[error("a {op} has no output, but \"output\" is {output}")]
    OutputNotProduced { op: &'static str, output: Value },
    #[error(
        "a get with outcome \"ok\" needs \"output\": the value read, or null if the key was absent"
    )]
    GetWithoutOutput,
    #[error("a get's \"output\" must be a string or null, not {output}")]
    GetOutputNotText { output: Value },
    /// `output` is `None` when the field is missing.
    #[error(
        "a cas with outcome \"ok\" needs a boolean \"output\" (whether it swapped), got {}",
        output.as_ref().map_or_else(|| "nothing".to_owned(), Value::to_string)
    )]
    CasOutputNotBool { output: Option<Value> },
    /// The operation breaks a rule every [`History`] keeps.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// serde_json's message without the position it appends: that position is
/// within the single line parsed, so [`ParseError::Json`] gives the file's
/// line instead.
fn without_position(error: &serde_json::Error) -> String {
    let full = error.to_string();
    match full.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => full,
    }
}

impl ParseError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            ParseError::Io { line, .. }
            | ParseError::Json { line, .. }
            | ParseError::Invalid { line, .. } => *line,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpName {
    Put,
    Get,
    Delete,
    Cas,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutcomeName {
    Ok,
    Failed,
    Unknown,
}

/// One line as read, before the cross-field rules are applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InRecord {
    client: u64,
    op: OpName,
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    expected: Option<String>,
    /// `None` = field absent, `Some(Value::Null)` = explicit null; the two
    /// differ for a get.
    #[serde(default, deserialize_with = "present")]
    output: Option<Value>,
    invoke_ns: u64,
    #[serde(default)]
    return_ns: Option<u64>,
    outcome: OutcomeName,
}

/// Deserialises a field that is present (possibly `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One line as written.
#[derive(Debug, Serialize)]
struct OutRecord<'a> {
    client: u64,
    op: OpName,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    invoke_ns: u64,
    return_ns: Option<u64>,
    outcome: OutcomeName,
}

impl History {
    /// Writes the history as JSON Lines, one operation per line, in order.
    pub fn to_jsonl(&self, mut writer: impl Write) -> io::Result<()> {
        for op in self.ops() {
            serde_json::to_writer(&mut writer, &out_record(op))?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    }

    /// Reads a history written in JSON Lines. Blank lines are skipped; the
    /// first bad line aborts the read with an error naming it.
    pub fn from_jsonl(reader: impl Read) -> Result<History, ParseError> {
        let mut history = History::new();
        for (index, line) in BufReader::new(reader).lines().enumerate() {
            let line_no = index + 1;
            let text = line.map_err(|source| ParseError::Io {
                line: line_no,
                source,
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let record: InRecord =
                serde_json::from_str(&text).map_err(|source| ParseError::Json {
                    line: line_no,
                    source,
                })?;
            let invalid = |problem| ParseError::Invalid {
                line: line_no,
                problem,
            };
            let op = operation(record).map_err(invalid)?;
            history
                .push(op)
                .map_err(|e| invalid(InvalidOperation::History(e)))?;
        }
        Ok(history)
    }
}

fn out_record(op: &Operation) -> OutRecord<'_> {
    let (name, value, expected) = match &op.op {
        OpKind::Put { value, .. } => (OpName::Put, Some(value.as_str()), None),
        OpKind::Get { .. } => (OpName::Get, None, None),
        OpKind::Delete { .. } => (OpName::Delete, None, None),
        OpKind::Cas { expected, new, .. } => (OpName::Cas, new.as_deref(), expected.as_deref()),
    };
    let (outcome, output) = match &op.outcome {
        Outcome::Ok(Output::Unit) => (OutcomeName::Ok, None),
        Outcome::Ok(Output::Read(read)) => (
            OutcomeName::Ok,
            Some(
                read.as_ref()
                    .map_or(Value::Null, |v| Value::String(v.clone())),
            ),
        ),
        Outcome::Ok(Output::Cas(swapped)) => (OutcomeName::Ok, Some(Value::Bool(*swapped))),
        Outcome::Failed => (OutcomeName::Failed, None),
        Outcome::Unknown => (OutcomeName::Unknown, None),
    };
    OutRecord {
        client: op.client,
        op: name,
        key: op.op.key(),
        value,
        expected,
        output,
        invoke_ns: op.invoke_ns,
        return_ns: op.return_ns,
        outcome,
    }
}

/// Applies the cross-field rules of the format.
fn operation(record: InRecord) -> Result<Operation, InvalidOperation> {
    let InRecord {
        client,
        op,
        key,
        value,
        expected,
        output,
        invoke_ns,
        return_ns,
        outcome,
    } = record;
    if expected.is_some() && !matches!(op, OpName::Cas) {
        return Err(InvalidOperation::ExpectedOutsideCas { op: name(op) });
    }
    let kind = match op {
        OpName::Put => {
            let value = value.ok_or(InvalidOperation::PutWithoutValue)?;
            OpKind::Put { key, value }
        }
        OpName::Get | OpName::Delete if value.is_some() => {
            return Err(InvalidOperation::ValueNotTaken { op: name(op) });
        }
        OpName::Get => OpKind::Get { key },
        OpName::Delete => OpKind::Delete { key },
        OpName::Cas => OpKind::Cas {
            key,
            expected,
            new: value,
        },
    };
    let outcome = match outcome {
        OutcomeName::Ok => Outcome::Ok(parse_output(op, output)?),
        OutcomeName::Failed | OutcomeName::Unknown => {
            if output.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(InvalidOperation::OutputWithoutOk);
            }
            match outcome {
                OutcomeName::Failed => Outcome::Failed,
                _ => Outcome::Unknown,
            }
        }
    };
    Ok(Operation {
        client,
        op: kind,
        invoke_ns,
        return_ns,
        outcome,
    })
}

fn parse_output(op: OpName, output: Option<Value>) -> Result<Output, InvalidOperation> {
    match (op, output) {
        (OpName::Put | OpName::Delete, None | Some(Value::Null)) => Ok(Output::Unit),
        (OpName::Put | OpName::Delete, Some(output)) => Err(InvalidOperation::OutputNotProduced {
            op: name(op),
            output,
        }),
        (OpName::Get, None) => Err(InvalidOperation::GetWithoutOutput),
        (OpName::Get, Some(Value::Null)) => Ok(Output::Read(None)),
        (OpName::Get, Some(Value::String(s))) => Ok(Output::Read(Some(s))),
        (OpName::Get, Some(output)) => Err(InvalidOperation::GetOutputNotText { output }),
        (OpName::Cas, Some(Value::Bool(swapped))) => Ok(Output::Cas(swapped)),
        (OpName::Cas, output) => Err(InvalidOperation::CasOutputNotBool { output }),
    }
}

fn name(op: OpName) -> &'static str {
    match op {
        OpName::Put => "put",
        OpName::Get => "get",
        OpName::Delete => "delete",
        OpName::Cas => "cas",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        History::from_ops(vec![
            Operation::ok(1, OpKind::put("k", "v1"), 0, 10, Output::Unit),
            Operation::ok(2, OpKind::get("k"), 5, 15, Output::Read(Some("v1".into()))),
            Operation::ok(2, OpKind::get("other"), 16, 17, Output::Read(None)),
            Operation::ok(
                3,
                OpKind::cas("k", Some("v1"), Some("v2")),
                20,
                30,
                Output::Cas(true),
            ),
            Operation::ok(3, OpKind::cas("k", None, None), 31, 32, Output::Cas(false)),
            Operation::ok(1, OpKind::delete("k"), 40, 41, Output::Unit),
            Operation::failed(4, OpKind::put("k", "x"), 50, 51),
            Operation::unknown(5, OpKind::put("k", "y"), 60),
            Operation {
                return_ns: Some(70),
                ..Operation::unknown(5, OpKind::cas("k", None, Some("z")), 61)
            },
        ])
        .expect("valid sample")
    }

    fn parse(text: &str) -> Result<History, ParseError> {
        History::from_jsonl(text.as_bytes())
    }

    #[test]
    fn round_trips() {
        let history = sample();
        let mut buf = Vec::new();
        history
            .to_jsonl(&mut buf)
            .expect("writing to a Vec cannot fail");
        let text = String::from_utf8(buf).expect("serde_json writes UTF-8");
        assert_eq!(text.lines().count(), history.len());
        let parsed = parse(&text).expect("own output parses");
        assert_eq!(parsed, history);
    }

    #[test]
    fn writes_the_documented_fields() {
        let mut buf = Vec::new();
        sample()
            .to_jsonl(&mut buf)
            .expect("writing to a Vec cannot fail");
        let text = String::from_utf8(buf).expect("serde_json writes UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"client":1,"op":"put","key":"k","value":"v1","invoke_ns":0,"return_ns":10,"outcome":"ok"}"#
        );
        assert_eq!(
            lines[2],
            r#"{"client":2,"op":"get","key":"other","output":null,"invoke_ns":16,"return_ns":17,"outcome":"ok"}"#
        );
        assert_eq!(
            lines[3],
            r#"{"client":3,"op":"cas","key":"k","value":"v2","expected":"v1","output":true,"invoke_ns":20,"return_ns":30,"outcome":"ok"}"#
        );
        assert_eq!(
            lines[7],
            r#"{"client":5,"op":"put","key":"k","value":"y","invoke_ns":60,"return_ns":null,"outcome":"unknown"}"#
        );
    }

    #[test]
    fn skips_blank_lines_but_counts_them() {
        let text = "\n{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"invoke_ns\":1,\"return_ns\":2,\"outcome\":\"ok\"}\n\n{oops\n";
        let err = parse(text).expect_err("line 4 is broken");
        assert_eq!(err.line(), 4);
        assert!(matches!(err, ParseError::Json { line: 4, .. }), "{err}");
    }

    fn error_for(line: &str) -> String {
        let text = format!(
            "{}\n{line}\n",
            r#"{"client":1,"op":"put","key":"k","value":"a","invoke_ns":0,"return_ns":1,"outcome":"ok"}"#
        );
        let err = parse(&text).expect_err("second line is bad");
        assert_eq!(err.line(), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn reports_what_is_wrong_with_the_line() {
        let cases = [
            (
                r#"{"client":1,"op":"get","key":"k","invoke_ns":0,"return_ns":1,"outcome":"ok"}"#,
                "line 2: a get with outcome \"ok\" needs \"output\"",
            ),
            (
                r#"{"client":1,"op":"put","key":"k","invoke_ns":0,"return_ns":1,"outcome":"ok"}"#,
                "line 2: a put needs a string \"value\"",
            ),
            (
                r#"{"client":1,"op":"cas","key":"k","invoke_ns":0,"return_ns":1,"outcome":"ok","output":"yes"}"#,
                "line 2: a cas with outcome \"ok\" needs a boolean \"output\"",
            ),
            (
                r#"{"client":1,"op":"get","key":"k","invoke_ns":5,"return_ns":1,"outcome":"ok","output":null}"#,
                "line 2: returned at 1ns, before it was invoked at 5ns",
            ),
            (
                r#"{"client":1,"op":"get","key":"k","invoke_ns":0,"return_ns":null,"outcome":"ok","output":null}"#,
                "line 2: outcome is ok but there is no return time",
            ),
            (
                r#"{"client":1,"op":"put","key":"k","value":"v","invoke_ns":0,"outcome":"unknown","output":"v"}"#,
                "line 2: \"output\" is only allowed when \"outcome\" is \"ok\"",
            ),
            (
                r#"{"client":1,"op":"get","key":"k","expected":"v","invoke_ns":0,"outcome":"unknown"}"#,
                "line 2: \"expected\" is only allowed for cas",
            ),
            (
                r#"{"client":1,"op":"scan","key":"k","invoke_ns":0,"outcome":"unknown"}"#,
                "line 2, column 23: unknown variant `scan`",
            ),
            (
                r#"{"client":1,"op":"get","key":"k","invoke_ns":0,"retrun_ns":3,"outcome":"unknown"}"#,
                "line 2, column 58: unknown field `retrun_ns`",
            ),
            (
                r#"{"client":1,"op":"get","invoke_ns":0,"outcome":"unknown"}"#,
                "line 2, column 57: missing field `key`",
            ),
        ];
        for (line, expected) in cases {
            let message = error_for(line);
            assert!(
                message.starts_with(expected),
                "for {line}\n got: {message}\nwant: {expected}..."
            );
        }
    }

    #[test]
    fn a_bad_operation_is_typed_with_the_values_at_fault() {
        let problem = |line: &str| match parse(line).expect_err("the line is invalid") {
            ParseError::Invalid { line: 1, problem } => problem,
            other => panic!("not an invalid operation on line 1: {other}"),
        };
        assert_eq!(
            problem(r#"{"client":1,"op":"put","key":"k","invoke_ns":0,"outcome":"unknown"}"#),
            InvalidOperation::PutWithoutValue
        );
        assert_eq!(
            problem(
                r#"{"client":1,"op":"get","key":"k","invoke_ns":0,"return_ns":1,"outcome":"ok","output":7}"#
            ),
            InvalidOperation::GetOutputNotText {
                output: Value::from(7)
            }
        );
        assert_eq!(
            problem(
                r#"{"client":1,"op":"get","key":"k","invoke_ns":5,"return_ns":1,"outcome":"ok","output":null}"#
            ),
            InvalidOperation::History(HistoryError::ReturnBeforeInvoke {
                invoke_ns: 5,
                return_ns: 1
            })
        );
    }

    #[test]
    fn explicit_nulls_equal_missing_optional_fields() {
        let text = r#"{"client":7,"op":"cas","key":"k","value":null,"expected":null,"output":false,"invoke_ns":3,"return_ns":4,"outcome":"ok"}"#;
        let history = parse(text).expect("valid line");
        assert_eq!(
            history.ops()[0],
            Operation::ok(7, OpKind::cas("k", None, None), 3, 4, Output::Cas(false))
        );
    }
}

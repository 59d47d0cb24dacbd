//! The data-driven test format: a script of commands, each followed by
//! `----` and the output it is expected to produce.
//!
//! ```text
//! # a comment
//! command arg key=value
//! ----
//! expected output
//! ```
//!
//! Run with `REWRITE=1` to regenerate expected outputs in place.

use std::fmt::Write as _;
use std::path::Path;

/// One command of a script with its arguments.
#[derive(Debug)]
pub struct Command {
    pub name: String,
    /// Positional arguments, in order.
    pub args: Vec<String>,
    /// `key=value` arguments.
    pub options: Vec<(String, String)>,
    pub line: usize,
}

impl Command {
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).unwrap_or_else(|| {
            panic!(
                "line {}: `{}` needs argument {}",
                self.line,
                self.name,
                i + 1
            )
        })
    }

    pub fn arg_u64(&self, i: usize) -> u64 {
        self.arg(i)
            .parse()
            .unwrap_or_else(|_| panic!("line {}: argument {} must be a number", self.line, i + 1))
    }
}

struct Case {
    /// Lines before the command (comments, blank lines), kept verbatim.
    preamble: String,
    command_line: String,
    command: Command,
    expected: String,
}

fn parse_command(line: &str, line_no: usize) -> Command {
    let mut words = line.split_whitespace();
    let name = words.next().expect("command line is not empty").to_string();
    let (mut args, mut options) = (Vec::new(), Vec::new());
    for word in words {
        match word.split_once('=') {
            Some((k, v)) => options.push((k.to_string(), v.to_string())),
            None => args.push(word.to_string()),
        }
    }
    Command {
        name,
        args,
        options,
        line: line_no,
    }
}

fn parse(text: &str) -> Vec<Case> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut i = 0;
    let mut preamble = String::new();
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            preamble.push_str(line);
            preamble.push('\n');
            i += 1;
            continue;
        }
        let command = parse_command(line, i + 1);
        i += 1;
        assert_eq!(
            lines.get(i).copied(),
            Some("----"),
            "line {}: expected `----` after a command",
            i + 1
        );
        i += 1;
        let mut expected = String::new();
        while i < lines.len() && !lines[i].is_empty() {
            expected.push_str(lines[i]);
            expected.push('\n');
            i += 1;
        }
        // The blank line that ends a case separates it from the next one.
        if i < lines.len() {
            i += 1;
        }
        cases.push(Case {
            preamble: std::mem::take(&mut preamble),
            command_line: line.to_string(),
            command,
            expected,
        });
    }
    cases
}

/// Runs every command of the script at `path` through `run`, comparing
/// outputs, or rewriting them when `REWRITE` is set.
pub fn run_file(path: &Path, mut run: impl FnMut(&Command) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut rewritten = String::new();
    let mut failures = String::new();
    for case in parse(&text) {
        let mut actual = run(&case.command);
        if !actual.is_empty() && !actual.ends_with('\n') {
            actual.push('\n');
        }
        if actual.is_empty() {
            actual.push_str("ok\n");
        }
        if actual != case.expected && failures.is_empty() {
            let _ = write!(
                failures,
                "{}:{}: `{}`\n--- expected\n{}--- actual\n{}",
                path.display(),
                case.command.line,
                case.command_line,
                case.expected,
                actual
            );
        }
        let _ = write!(
            rewritten,
            "{}{}\n----\n{}",
            case.preamble, case.command_line, actual
        );
        rewritten.push('\n');
    }
    if rewrite {
        std::fs::write(path, rewritten.trim_end().to_string() + "\n").unwrap();
    } else if !failures.is_empty() {
        panic!("{failures}");
    }
}

//! The `keel-lincheck` binary's exit codes and output.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Writes `contents` to a fresh file under the target directory.
fn history_file(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lincheck-cli");
    std::fs::create_dir_all(&dir).expect("target tmpdir is writable");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("target tmpdir is writable");
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-lincheck"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn run_on(name: &str, contents: &str) -> Output {
    let path = history_file(name, contents);
    run(&[path.to_str().expect("utf-8 path")])
}

const PUT: &str =
    r#"{"client":1,"op":"put","key":"x","value":"1","invoke_ns":0,"return_ns":10,"outcome":"ok"}"#;

#[test]
fn linearizable_history_exits_zero() {
    let text = format!(
        "{PUT}\n{}\n",
        r#"{"client":2,"op":"get","key":"x","output":"1","invoke_ns":20,"return_ns":30,"outcome":"ok"}"#
    );
    let out = run_on("good.jsonl", &text);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 operations: linearizable"), "{stdout}");
}

#[test]
fn violation_exits_one_and_explains() {
    let text = format!(
        "{PUT}\n{}\n",
        r#"{"client":2,"op":"get","key":"x","output":null,"invoke_ns":20,"return_ns":30,"outcome":"ok"}"#
    );
    let out = run_on("bad.jsonl", &text);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOT linearizable (key \"x\")"), "{stdout}");
    assert!(stdout.contains("#1 client 2 get(\"x\")"), "{stdout}");
}

#[test]
fn parse_error_exits_two_and_names_the_line() {
    let text = format!("{PUT}\n{PUT}\n{{\"client\":1}}\n");
    let out = run_on("broken.jsonl", &text);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["/nonexistent/history.jsonl"]).status.code(), Some(2));
    assert_eq!(run(&["--max-steps", "lots", "x"]).status.code(), Some(2));
}

#[test]
fn exhausted_budget_exits_three() {
    let mut text = String::new();
    for c in 0..12 {
        text.push_str(&format!(
            "{{\"client\":{c},\"op\":\"put\",\"key\":\"x\",\"value\":\"{c}\",\"invoke_ns\":0,\"return_ns\":100,\"outcome\":\"ok\"}}\n"
        ));
    }
    text.push_str(r#"{"client":99,"op":"get","key":"x","output":"none","invoke_ns":200,"return_ns":201,"outcome":"ok"}"#);
    let path = history_file("hard.jsonl", &text);
    let out = run(&["--max-steps", "100", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

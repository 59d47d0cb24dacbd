//! `docs/guide.md` shows only code that compiles and runs: every ```rust
//! block in it must be an excerpt, line for line, of one of the programs
//! below, which `cargo test` builds and runs.

use std::path::{Path, PathBuf};

/// The programs the guide quotes, relative to the repository root.
const SOURCES: &[&str] = &[
    "crates/runtime/examples/counter.rs",
    "crates/runtime/examples/btree_log_store.rs",
    "crates/runtime/examples/btree_snapshot_store.rs",
    "crates/runtime/tests/in_process.rs",
    "crates/runtime/tests/lifecycle.rs",
    "crates/runtime/tests/membership.rs",
    "crates/sim/tests/service.rs",
    "examples/lock-service/src/lib.rs",
    "examples/lock-service/src/main.rs",
    "examples/lock-service/tests/sim.rs",
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The guide's Rust code blocks, each as its lines.
fn rust_blocks(guide: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in guide.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => block.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "a code block is not closed");
    blocks
}

/// Whether `block` appears in `source` as consecutive lines, indentation
/// aside (the guide quotes function bodies without their indent).
fn quotes(source: &str, block: &[&str]) -> bool {
    let source: Vec<&str> = source.lines().map(str::trim_start).collect();
    let block: Vec<&str> = block.iter().map(|l| l.trim_start()).collect();
    source.windows(block.len()).any(|window| window == block)
}

#[test]
fn every_code_block_of_the_guide_is_quoted_from_a_compiled_program() {
    let root = repository();
    let guide = std::fs::read_to_string(root.join("docs/guide.md")).unwrap();
    let sources: Vec<String> = SOURCES
        .iter()
        .map(|path| std::fs::read_to_string(root.join(path)).unwrap())
        .collect();
    let blocks = rust_blocks(&guide);
    assert!(blocks.len() >= 8, "the guide shows its code");
    for block in blocks {
        assert!(
            sources.iter().any(|source| quotes(source, &block)),
            "this block of docs/guide.md is in none of {SOURCES:?}:\n{}",
            block.join("\n")
        );
    }
}

#[test]
fn a_changed_line_is_no_longer_a_quote() {
    let source = "fn f() {\n    let x = 1;\n    let y = 2;\n}\n";
    assert!(quotes(source, &["let x = 1;", "let y = 2;"]));
    assert!(!quotes(source, &["let x = 1;", "let y = 3;"]));
    assert!(!quotes(source, &["let y = 2;", "let x = 1;"]));
}

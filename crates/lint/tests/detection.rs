//! The checks on small crates written here, so that what they find (and
//! what they leave alone) is pinned down independently of the workspace.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use keel_lint::{ModuleTree, import_circles, text_payloads};

/// Loads a crate from `(path, source)` pairs; `src/lib.rs` is the root.
fn tree(files: &[(&str, &str)]) -> ModuleTree {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
        .collect();
    let read = move |path: &Path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    };
    ModuleTree::load(Path::new("src/lib.rs"), &read).unwrap()
}

/// The circles as sorted lists of module paths.
fn circles(files: &[(&str, &str)]) -> Vec<Vec<String>> {
    import_circles(&tree(files))
        .iter()
        .map(|circle| circle.module_paths())
        .collect()
}

#[test]
fn siblings_that_use_each_other_are_a_circle() {
    let found = circles(&[
        ("src/lib.rs", "mod sim; mod profile;"),
        (
            "src/sim.rs",
            "use crate::profile::Round; pub struct Sim { round: Round }",
        ),
        (
            "src/profile.rs",
            "pub struct Round; impl Round { fn step(&self, sim: &crate::sim::Sim) {} }",
        ),
    ]);
    assert_eq!(found, vec![vec!["crate::profile", "crate::sim"]]);
}

#[test]
fn a_loop_through_three_files_and_through_code_paths_is_found() {
    let found = circles(&[
        ("src/lib.rs", "mod a; mod b; mod c;"),
        ("src/a.rs", "pub fn f() { crate::b::g() }"),
        ("src/b.rs", "pub fn g() { super::c::h() }"),
        // Inside a macro's tokens, and through a renamed import.
        (
            "src/c.rs",
            "use crate::a as first; pub fn h() { println!(\"{:?}\", first::f()) }",
        ),
    ]);
    assert_eq!(found, vec![vec!["crate::a", "crate::b", "crate::c"]]);
}

#[test]
fn a_one_way_chain_is_no_circle() {
    let found = circles(&[
        ("src/lib.rs", "mod a; mod b;"),
        ("src/a.rs", "use crate::b::T; pub fn f(_: T) {}"),
        ("src/b.rs", "pub struct T;"),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_parent_composing_children_that_use_its_items_is_no_circle() {
    let found = circles(&[
        ("src/lib.rs", "mod shared;"),
        (
            "src/shared/mod.rs",
            "mod writer; pub use writer::Writer; pub struct Config; fn make() -> writer::Writer { writer::Writer }",
        ),
        (
            "src/shared/writer.rs",
            "pub struct Writer; impl Writer { fn c(&self) -> super::Config { super::Config } }",
        ),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn test_modules_count_for_nothing() {
    let found = circles(&[
        ("src/lib.rs", "mod a; mod b;"),
        ("src/a.rs", "pub fn f() {} #[cfg(test)] mod tests;"),
        ("src/a/tests.rs", "use crate::b::helper;"),
        (
            "src/b.rs",
            "pub fn g() { crate::a::f() } #[cfg(test)] pub fn helper() {}",
        ),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn re_exports_lead_to_the_defining_module() {
    // `a` names `crate::Thing`, which the root re-exports from `b`; `b`
    // uses `a`: a circle between `a` and `b`, not through the root.
    let found = circles(&[
        ("src/lib.rs", "mod a; mod b; pub use b::Thing;"),
        ("src/a.rs", "pub fn f(_: crate::Thing) {}"),
        (
            "src/b.rs",
            "pub struct Thing; fn g() { crate::a::f(Thing) }",
        ),
    ]);
    assert_eq!(found, vec![vec!["crate::a", "crate::b"]]);
}

#[test]
fn a_module_re_exporting_a_siblings_item_uses_it() {
    let found = circles(&[
        ("src/lib.rs", "mod a; mod b;"),
        ("src/a.rs", "pub use crate::b::T; pub struct U;"),
        ("src/b.rs", "pub struct T; fn f(_: crate::a::U) {}"),
    ]);
    // A `use`, `pub` or not, names the item: `a` uses `b`.
    assert_eq!(found, vec![vec!["crate::a", "crate::b"]]);
}

#[test]
fn text_fields_of_error_types_are_listed_and_others_are_not() {
    let found = text_payloads(&tree(&[(
        "src/lib.rs",
        r#"
        #[derive(Debug, thiserror::Error)]
        pub enum E {
            #[error("bad url {url}")]
            BadUrl { url: String, flag: &'static str },
            #[error("{0}")]
            Other(std::sync::Arc<str>),
            #[error("io")]
            Io(#[from] std::io::Error),
            #[error("utf-8")]
            NotUtf8(#[from] std::str::Utf8Error),
            #[error("names")]
            Names(Vec<std::string::String>),
        }
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        pub struct Message(Box<str>);
        pub struct NotAnError { text: String }
        #[cfg(test)]
        mod tests {
            #[derive(Debug, thiserror::Error)]
            #[error("{0}")]
            struct TestOnly(String);
        }
        "#,
    )]));
    let keys: Vec<String> = found.iter().map(|p| p.key()).collect();
    assert_eq!(
        keys,
        vec!["E::BadUrl.url", "E::Names.0", "E::Other.0", "Message.0"]
    );
}

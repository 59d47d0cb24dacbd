//! Structural checks on Keel's own source, run as tests so that CI fails
//! when the structure drifts (issue #19, "one source of truth"):
//!
//! - **No import circle between the files of a crate.** When file A uses
//!   file B's items and B uses A's (directly or around a longer loop),
//!   neither can be read, tested or moved alone. [`import_circles`]
//!   parses a crate from its root, resolves every path its production
//!   code writes to the file that defines the item, and reports each
//!   group of files that reach one another. What counts as a use is
//!   defined in [`imports`].
//! - **No message strings in error types.** [`text_payloads`] lists every
//!   `String`/`str` field of an error type; the workspace test holds the
//!   reviewed list of those that carry data (a key, a URL the user gave)
//!   rather than a message.
//!
//! The checks read source with `syn`; they never build or run it.

pub mod cycles;
pub mod error_payloads;
pub mod imports;
pub mod modules;
pub mod references;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error_payloads::{TextPayload, text_payloads};
pub use modules::{LoadError, ModuleId, ModuleTree};

/// Modules of one crate that use one another in a loop, with the uses
/// that close it.
#[derive(Debug, PartialEq, Eq)]
pub struct Circle {
    /// Each module's path (`crate::a::b`) and file.
    pub modules: Vec<(String, PathBuf)>,
    /// `(from, to, path)`: module `from` writes `path`, which names an
    /// item defined in module `to`; only uses inside the circle.
    pub uses: Vec<(String, String, String)>,
}

impl Circle {
    /// The modules' paths, sorted.
    pub fn module_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.modules.iter().map(|(path, _)| path.clone()).collect();
        paths.sort();
        paths
    }
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modules: Vec<String> = self
            .modules
            .iter()
            .map(|(path, file)| format!("{path} ({})", file.display()))
            .collect();
        writeln!(f, "circle between {}:", modules.join(", "))?;
        for (from, to, path) in &self.uses {
            writeln!(f, "  {from} uses {to}: {path}")?;
        }
        Ok(())
    }
}

/// The import circles of one crate.
pub fn import_circles(tree: &ModuleTree) -> Vec<Circle> {
    let references = references::collect(tree);
    let graph = imports::use_graph(tree, &references);
    let path = |id: ModuleId| tree.modules[id].display_path();
    cycles::circles(&graph.successors())
        .into_iter()
        .map(|members| {
            let uses = graph
                .edges
                .iter()
                .filter(|((from, to), _)| members.contains(from) && members.contains(to))
                .map(|(&(from, to), example)| (path(from), path(to), example.clone()))
                .collect();
            Circle {
                modules: members
                    .into_iter()
                    .map(|id| (path(id), tree.modules[id].file.clone()))
                    .collect(),
                uses,
            }
        })
        .collect()
}

/// The root files of every crate under `crates/` of the workspace at
/// `workspace`: `src/lib.rs`, `src/main.rs` and `src/bin/*.rs`.
pub fn crate_roots(workspace: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut roots = Vec::new();
    for package in std::fs::read_dir(workspace.join("crates"))? {
        let src = package?.path().join("src");
        for root in ["lib.rs", "main.rs"] {
            if src.join(root).is_file() {
                roots.push(src.join(root));
            }
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            for bin in bins {
                let bin = bin?.path();
                if bin.extension().is_some_and(|e| e == "rs") {
                    roots.push(bin);
                }
            }
        }
    }
    roots.sort();
    Ok(roots)
}

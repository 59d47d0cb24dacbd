//! Which module uses which: every path a module writes, resolved to the
//! module that defines the item it names.
//!
//! **What counts as a use of module B by module A:** production code in
//! A (not under `#[cfg(test)]`) names an item *defined* in B — a type,
//! function, constant, trait, macro or variant — through `use`, a path in
//! code (`crate::b::f()`, `super::T`), or a path inside a macro's tokens.
//! Re-exports are followed to the definition, so naming `crate::Violation`
//! uses the module that defines `Violation`, not the crate root that
//! re-exports it (the re-export itself is the root's use). A `mod b;`
//! declaration is not a use, nor is naming a module without one of its
//! items (`use crate::b;` counts only through the `b::item` paths that
//! follow). Paths into other crates are ignored.
//!
//! **What does not count:** a module's use of its own ancestors. A child
//! module is part of its parent — it sees the parent's private items, and
//! `super::` is its enclosing scope — so `mod.rs` defining what its
//! children share while composing them is one unit, not two peers leaning
//! on each other. A module's test child (`#[cfg(test)] mod tests`) counts
//! for nothing at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::modules::{ModuleId, ModuleTree};
use crate::references::{ModuleReferences, Segments};

/// How many `use` aliases one path is followed through before giving up:
/// real chains of re-exports are two or three long, and a bound keeps a
/// loop of aliases (which the compiler rejects) from hanging the check.
const MAX_ALIAS_HOPS: usize = 16;

/// The production modules of one crate and, for each pair where one uses
/// the other, the first path that shows it.
#[derive(Debug, Default)]
pub struct UseGraph {
    pub modules: BTreeSet<ModuleId>,
    pub edges: BTreeMap<(ModuleId, ModuleId), String>,
}

impl UseGraph {
    /// For each module, the modules it uses.
    pub fn successors(&self) -> BTreeMap<ModuleId, BTreeSet<ModuleId>> {
        let mut out: BTreeMap<ModuleId, BTreeSet<ModuleId>> = self
            .modules
            .iter()
            .map(|&module| (module, BTreeSet::new()))
            .collect();
        for &(from, to) in self.edges.keys() {
            out.entry(from).or_default().insert(to);
        }
        out
    }
}

/// What a path leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// An item defined in this module.
    Item(ModuleId),
    /// The module itself.
    Module(ModuleId),
}

/// Builds the use graph of a crate.
pub fn use_graph(tree: &ModuleTree, references: &BTreeMap<ModuleId, ModuleReferences>) -> UseGraph {
    let resolver = Resolver { tree, references };
    let mut graph = UseGraph::default();
    for (&from, found) in references {
        graph.modules.insert(from);
        let uses =
            found
                .paths
                .iter()
                .filter_map(|path| match resolver.resolve(from, path, 0) {
                    Some(Target::Item(to)) => Some((to, path)),
                    _ => None,
                })
                .chain(found.globs.iter().filter_map(
                    |path| match resolver.resolve(from, path, 0) {
                        Some(Target::Module(to)) => Some((to, path)),
                        _ => None,
                    },
                ));
        for (to, path) in uses {
            if to != from && !is_ancestor(tree, to, from) {
                graph
                    .edges
                    .entry((from, to))
                    .or_insert_with(|| path.join("::"));
            }
        }
    }
    graph
}

/// Whether `ancestor` encloses `module`.
fn is_ancestor(tree: &ModuleTree, ancestor: ModuleId, module: ModuleId) -> bool {
    let mut current = tree.modules[module].parent;
    while let Some(parent) = current {
        if parent == ancestor {
            return true;
        }
        current = tree.modules[parent].parent;
    }
    false
}

struct Resolver<'a> {
    tree: &'a ModuleTree,
    references: &'a BTreeMap<ModuleId, ModuleReferences>,
}

impl Resolver<'_> {
    /// Resolves `path` as written in module `scope`: from `crate`, `self`,
    /// `super`, a child module, or a name a `use` in `scope` brought in.
    /// Anything else (another crate, a local, a generic) resolves to
    /// nothing.
    fn resolve(&self, scope: ModuleId, path: &[String], hops: usize) -> Option<Target> {
        let (first, rest) = path.split_first()?;
        let module = &self.tree.modules[scope];
        match first.as_str() {
            "crate" => self.walk(self.tree.root(), rest, hops),
            "self" => self.walk(scope, rest, hops),
            "super" => self.walk(module.parent?, rest, hops),
            name => {
                if let Some(&child) = module.children.get(name) {
                    return self.walk(child, rest, hops);
                }
                self.through_alias(scope, name, rest, hops)
            }
        }
    }

    /// Follows `segments` down from `module`: child modules, then
    /// re-exports, else an item of `module` itself.
    fn walk(&self, module: ModuleId, segments: &[String], hops: usize) -> Option<Target> {
        let Some((first, rest)) = segments.split_first() else {
            return Some(Target::Module(module));
        };
        if first == "super" {
            let parent = self.tree.modules[module].parent?;
            return self.walk(parent, rest, hops);
        }
        if let Some(&child) = self.tree.modules[module].children.get(first) {
            return self.walk(child, rest, hops);
        }
        self.through_alias(module, first, rest, hops)
            .or(Some(Target::Item(module)))
    }

    /// `name` as brought into `scope` by one of its `use` declarations,
    /// followed by `rest`.
    fn through_alias(
        &self,
        scope: ModuleId,
        name: &str,
        rest: &[String],
        hops: usize,
    ) -> Option<Target> {
        if hops >= MAX_ALIAS_HOPS {
            return None;
        }
        let aliased = self.references.get(&scope)?.aliases.get(name)?;
        let mut full: Segments = aliased.clone();
        full.extend(rest.iter().cloned());
        self.resolve(scope, &full, hops + 1)
    }
}

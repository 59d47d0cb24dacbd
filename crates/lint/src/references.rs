//! The paths a module's production code writes — in `use` declarations,
//! in types and expressions, and inside macro invocations — and the names
//! its `use` declarations bring into scope.
//!
//! Code under `#[cfg(test)]` is left out: a test depends on what it tests
//! by nature, and that dependency says nothing about how the production
//! code is layered.

use std::collections::BTreeMap;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{ImplItem, Item, TraitItem, UseTree};

use crate::modules::{ModuleId, ModuleTree, is_cfg_test};

/// A path as written, segment by segment (`["crate", "sim", "Simulation"]`).
pub type Segments = Vec<String>;

/// What one module's production code names.
#[derive(Debug, Default)]
pub struct ModuleReferences {
    /// Every path written, `use` paths included.
    pub paths: Vec<Segments>,
    /// Modules whose every item a `use path::*` brings in.
    pub globs: Vec<Segments>,
    /// Names a `use` brings into scope, with the path they stand for.
    pub aliases: BTreeMap<String, Segments>,
}

/// Collects the references of every module that is not test-only, by
/// module id.
pub fn collect(tree: &ModuleTree) -> BTreeMap<ModuleId, ModuleReferences> {
    tree.modules
        .iter()
        .enumerate()
        .filter(|(_, module)| !module.test_only)
        .map(|(id, module)| {
            let mut collector = Collector::default();
            for item in &module.items {
                collector.visit_item(item);
            }
            (id, collector.found)
        })
        .collect()
}

#[derive(Default)]
struct Collector {
    found: ModuleReferences,
}

impl Collector {
    fn use_tree(&mut self, prefix: &mut Segments, tree: &UseTree) {
        match tree {
            UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            UseTree::Name(name) => {
                let ident = name.ident.to_string();
                // `use a::b::{self}` names the module `a::b`.
                let (full, alias) = if ident == "self" {
                    (prefix.clone(), prefix.last().cloned())
                } else {
                    let mut full = prefix.clone();
                    full.push(ident.clone());
                    (full, Some(ident))
                };
                self.found.paths.push(full.clone());
                if let Some(alias) = alias {
                    self.found.aliases.insert(alias, full);
                }
            }
            UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                let ident = rename.ident.to_string();
                if ident != "self" {
                    full.push(ident);
                }
                self.found.paths.push(full.clone());
                let alias = rename.rename.to_string();
                if alias != "_" {
                    self.found.aliases.insert(alias, full);
                }
            }
            UseTree::Glob(_) => self.found.globs.push(prefix.clone()),
            UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths inside a macro's tokens, which syn leaves unparsed: every run
    /// `a::b::c` of two or more segments that does not start with `::`.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(group) = &tokens[i] {
                self.tokens(group.stream());
                i += 1;
                continue;
            }
            let starts_path = matches!(&tokens[i], TokenTree::Ident(_))
                && !(i >= 2 && is_path_separator(&tokens[i - 2], &tokens[i - 1]));
            if !starts_path {
                i += 1;
                continue;
            }
            let mut segments = Vec::new();
            let mut j = i;
            while let Some(TokenTree::Ident(ident)) = tokens.get(j) {
                segments.push(ident.to_string());
                match (tokens.get(j + 1), tokens.get(j + 2)) {
                    (Some(a), Some(b)) if is_path_separator(a, b) => j += 3,
                    _ => break,
                }
            }
            if segments.len() >= 2 {
                self.found.paths.push(segments);
            }
            i = j + 1;
        }
    }
}

fn is_path_separator(a: &TokenTree, b: &TokenTree) -> bool {
    matches!((a, b), (TokenTree::Punct(a), TokenTree::Punct(b))
        if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs = match item {
            Item::Const(i) => &i.attrs,
            Item::Enum(i) => &i.attrs,
            Item::ExternCrate(i) => &i.attrs,
            Item::Fn(i) => &i.attrs,
            Item::ForeignMod(i) => &i.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Macro(i) => &i.attrs,
            // A child module is a module of its own.
            Item::Mod(_) => return,
            Item::Static(i) => &i.attrs,
            Item::Struct(i) => &i.attrs,
            Item::Trait(i) => &i.attrs,
            Item::TraitAlias(i) => &i.attrs,
            Item::Type(i) => &i.attrs,
            Item::Union(i) => &i.attrs,
            Item::Use(i) => &i.attrs,
            _ => return,
        };
        if !is_cfg_test(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast ImplItem) {
        let test_only = match item {
            ImplItem::Const(i) => is_cfg_test(&i.attrs),
            ImplItem::Fn(i) => is_cfg_test(&i.attrs),
            ImplItem::Type(i) => is_cfg_test(&i.attrs),
            _ => false,
        };
        if !test_only {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast TraitItem) {
        let test_only = match item {
            TraitItem::Const(i) => is_cfg_test(&i.attrs),
            TraitItem::Fn(i) => is_cfg_test(&i.attrs),
            TraitItem::Type(i) => is_cfg_test(&i.attrs),
            _ => false,
        };
        if !test_only {
            syn::visit::visit_trait_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        // `use ::name` is always another crate.
        if item.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.found.paths.push(segments);
        }
        syn::visit::visit_path(self, path);
    }

    /// `pub(in crate::a)` and `pub(super)` say who may see an item, not
    /// what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    /// Attributes hold derives and format strings, not uses.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }
}

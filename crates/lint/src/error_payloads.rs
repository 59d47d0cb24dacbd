//! Text carried by error types: every field of an error type (one that
//! derives `Error`) whose type owns text (`String`, `Arc<str>`,
//! `Box<str>`, `Option<String>`, `Vec<String>`, ...). A `&'static str` is
//! left out: it is a label fixed where the error is raised (a flag's
//! name, an operation), and cannot carry anything formatted at run time.
//!
//! Such a field is either a message — a sentence somebody formatted, which
//! a caller can only print, and which belongs in a typed variant instead —
//! or data: the user's input or a name echoed back (`InvalidUrl { url }`).
//! The parser cannot tell them apart; it finds them all, so that a person
//! decides for each and a new one cannot slip in unseen.

use std::fmt;
use std::path::PathBuf;

use quote::ToTokens;
use syn::visit::Visit;
use syn::{Attribute, Fields, Item};

use crate::modules::ModuleTree;

/// One text field of an error type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TextPayload {
    pub file: PathBuf,
    /// `Type::Variant` for an enum, `Type` for a struct.
    pub owner: String,
    /// The field's name, or its position in a tuple variant.
    pub field: String,
    /// The field's type as written.
    pub ty: String,
}

impl TextPayload {
    /// `Type::Variant.field`, the key a reviewed list names it by.
    pub fn key(&self) -> String {
        format!("{}.{}", self.owner, self.field)
    }
}

impl fmt::Display for TextPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key(), self.ty)
    }
}

/// Every text field of every error type in the crate's production code.
pub fn text_payloads(tree: &ModuleTree) -> Vec<TextPayload> {
    let mut found = Vec::new();
    for module in tree.modules.iter().filter(|m| !m.test_only) {
        for item in &module.items {
            let mut in_file = |owner: String, fields: &Fields| {
                for (position, field) in fields.iter().enumerate() {
                    if holds_text(&field.ty) {
                        found.push(TextPayload {
                            file: module.file.clone(),
                            owner: owner.clone(),
                            field: field
                                .ident
                                .as_ref()
                                .map_or_else(|| position.to_string(), ToString::to_string),
                            ty: field.ty.to_token_stream().to_string().replace(' ', ""),
                        });
                    }
                }
            };
            match item {
                Item::Enum(e) if derives_error(&e.attrs) => {
                    for variant in &e.variants {
                        in_file(format!("{}::{}", e.ident, variant.ident), &variant.fields);
                    }
                }
                Item::Struct(s) if derives_error(&s.attrs) => {
                    in_file(s.ident.to_string(), &s.fields);
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// `#[derive(.., Error, ..)]` or `#[derive(.., thiserror::Error, ..)]`.
fn derives_error(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if !attr.path().is_ident("derive") {
            return false;
        }
        let mut found = false;
        // A derive list that does not parse derives nothing we know of.
        let _ = attr.parse_nested_meta(|meta| {
            found |= meta
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Error");
            Ok(())
        });
        found
    })
}

/// Whether the type owns text: names `String`, or `str` other than
/// behind a `&'static`. Only a path's last segment names a type, so the
/// module `std::str` (as in `std::str::Utf8Error`) is not text.
fn holds_text(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            self.0 |= path
                .segments
                .last()
                .is_some_and(|s| s.ident == "String" || s.ident == "str");
            syn::visit::visit_path(self, path);
        }
        fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
            let is_static = reference
                .lifetime
                .as_ref()
                .is_some_and(|l| l.ident == "static");
            if !is_static {
                syn::visit::visit_type_reference(self, reference);
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

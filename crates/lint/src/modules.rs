//! A crate's module tree, read the way the compiler reads it: from the
//! crate root, following `mod` declarations to their files.
//!
//! Following declarations rather than listing `src/**/*.rs` tells which
//! module each file holds, which of them exist only under `#[cfg(test)]`,
//! and which files belong to another crate root (`main.rs`, `src/bin/`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use syn::{Attribute, Item, ItemMod};

/// Index of a module in its [`ModuleTree`].
pub type ModuleId = usize;

/// One module: a file, or an inline `mod name { .. }` inside one.
pub struct Module {
    /// The path after `crate` (`["invariants", "liveness"]`; empty for
    /// the root).
    pub path: Vec<String>,
    /// The file that holds the module's items; an inline module shares
    /// its parent's.
    pub file: PathBuf,
    pub parent: Option<ModuleId>,
    pub children: BTreeMap<String, ModuleId>,
    /// Declared under `#[cfg(test)]`, itself or through an ancestor.
    pub test_only: bool,
    /// The module's own items; a child module appears as its declaration
    /// only.
    pub items: Vec<Item>,
}

impl Module {
    /// `crate::a::b`, for reports.
    pub fn display_path(&self) -> String {
        std::iter::once("crate")
            .chain(self.path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("::")
    }
}

/// Why a crate's module tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {source}")]
    Parse { path: PathBuf, source: syn::Error },
    #[error("module `{module}` declared in {declared_in} has no file (looked for {candidates:?})")]
    MissingFile {
        module: String,
        declared_in: PathBuf,
        candidates: Vec<PathBuf>,
    },
}

/// Every module of one crate, the root first.
pub struct ModuleTree {
    pub modules: Vec<Module>,
}

/// Where a module's file-backed children live.
struct Place {
    /// The file the declarations are in.
    file: PathBuf,
    /// The directory `mod child;` looks in.
    child_dir: PathBuf,
    /// Inside an inline `mod { .. }` block (changes where `#[path]` is
    /// relative to).
    inline: bool,
}

impl ModuleTree {
    /// Reads the crate whose root file is `root` (`src/lib.rs`,
    /// `src/main.rs`, `src/bin/x.rs`) through `read`.
    pub fn load(
        root: &Path,
        read: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<ModuleTree, LoadError> {
        let mut tree = ModuleTree {
            modules: Vec::new(),
        };
        let items = parse(root, read)?;
        let place = Place {
            file: root.to_path_buf(),
            child_dir: parent_dir(root),
            inline: false,
        };
        tree.add(Vec::new(), None, false, items, &place, read)?;
        Ok(tree)
    }

    /// Reads a crate from disk.
    pub fn load_from_disk(root: &Path) -> Result<ModuleTree, LoadError> {
        Self::load(root, &|path| std::fs::read_to_string(path))
    }

    pub fn root(&self) -> ModuleId {
        0
    }

    fn add(
        &mut self,
        path: Vec<String>,
        parent: Option<ModuleId>,
        test_only: bool,
        items: Vec<Item>,
        place: &Place,
        read: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<ModuleId, LoadError> {
        let id = self.modules.len();
        self.modules.push(Module {
            path: path.clone(),
            file: place.file.clone(),
            parent,
            children: BTreeMap::new(),
            test_only,
            items: Vec::new(),
        });
        for item in &items {
            let Item::Mod(decl) = item else { continue };
            let name = decl.ident.to_string();
            let child_test_only = test_only || is_cfg_test(&decl.attrs);
            let mut child_path = path.clone();
            child_path.push(name.clone());
            let (child_items, child_place) = match &decl.content {
                Some((_, inline_items)) => (
                    inline_items.clone(),
                    Place {
                        file: place.file.clone(),
                        child_dir: place.child_dir.join(&name),
                        inline: true,
                    },
                ),
                None => {
                    let file = child_file(decl, place, read)?;
                    let items = parse(&file, read)?;
                    let child_dir = if path_attribute(&decl.attrs).is_some()
                        || file.file_name().is_some_and(|f| f == "mod.rs")
                    {
                        parent_dir(&file)
                    } else {
                        place.child_dir.join(&name)
                    };
                    let place = Place {
                        file,
                        child_dir,
                        inline: false,
                    };
                    (items, place)
                }
            };
            let child = self.add(
                child_path,
                Some(id),
                child_test_only,
                child_items,
                &child_place,
                read,
            )?;
            self.modules[id].children.insert(name, child);
        }
        self.modules[id].items = items;
        Ok(id)
    }
}

/// The file a `mod name;` declaration loads: its `#[path]`, else
/// `name.rs`, else `name/mod.rs` in the declaring module's directory.
fn child_file(
    decl: &ItemMod,
    place: &Place,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<PathBuf, LoadError> {
    let name = decl.ident.to_string();
    let candidates = match path_attribute(&decl.attrs) {
        Some(explicit) if place.inline => vec![place.child_dir.join(explicit)],
        Some(explicit) => vec![parent_dir(&place.file).join(explicit)],
        None => vec![
            place.child_dir.join(format!("{name}.rs")),
            place.child_dir.join(&name).join("mod.rs"),
        ],
    };
    candidates
        .iter()
        .find(|candidate| read(candidate).is_ok())
        .cloned()
        .ok_or_else(|| LoadError::MissingFile {
            module: name,
            declared_in: place.file.clone(),
            candidates,
        })
}

fn parse(path: &Path, read: &dyn Fn(&Path) -> io::Result<String>) -> Result<Vec<Item>, LoadError> {
    let text = read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = syn::parse_file(&text).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file.items)
}

fn parent_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The value of a `#[path = "..."]` attribute.
fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| {
        let syn::Meta::NameValue(meta) = &attr.meta else {
            return None;
        };
        if !meta.path.is_ident("path") {
            return None;
        }
        match &meta.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        }
    })
}

/// Whether the attributes compile the item only for tests: `#[cfg(test)]`
/// or `#[cfg(all(test, ..))]`. `cfg(any(test, feature = ".."))` code also
/// ships, so it counts as production code.
pub fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let Ok(predicate) = attr.parse_args::<syn::Meta>() else {
            return false;
        };
        requires_test(&predicate)
    })
}

fn requires_test(predicate: &syn::Meta) -> bool {
    match predicate {
        syn::Meta::Path(path) => path.is_ident("test"),
        syn::Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(
                syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
            )
            .is_ok_and(|all| all.iter().any(requires_test)),
        _ => false,
    }
}

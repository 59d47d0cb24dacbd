//! The structural checks on the workspace itself: a new import circle, or
//! a new text field in an error type, fails CI until a person has looked
//! at it (issue #19).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keel_lint::{ModuleTree, crate_roots, import_circles, text_payloads};

/// Text fields of error types that hold data — what the user gave or a
/// name the error is about — rather than a message, by `Type::Variant.field`.
const TEXT_THAT_IS_DATA: &[&str] = &[
    // A snapshot file's checksums, in hex, as the operator compares them.
    "SnapshotFileError::Checksum.computed",
    "SnapshotFileError::Checksum.stored",
    // Endpoints, paths and programs as the user named them.
    "BenchError::Connect.endpoint",
    "BenchError::Endpoint.endpoint",
    "BenchError::Plot.path",
    "StartError::Spawn.program",
    "TargetError::Endpoint.endpoint",
    // Flag values and URLs as the operator wrote them.
    "ConfigError::AuthTokenKind.kind",
    "ConfigError::BadClusterEntry.entry",
    "ConfigError::BadUrl.value",
    "ConfigError::HttpsWithoutCert.url",
    "ConfigError::MixedPeerSchemes.urls",
    "ConfigError::NotInCluster.listed",
    "ConfigError::NotInCluster.name",
    "ConfigError::PeerUrlMismatch.advertised",
    "ConfigError::PeerUrlMismatch.in_cluster",
    "ConfigError::PeerUrlMismatch.name",
    "ConfigError::PortClash.authority",
    "ConfigError::PortZero.url",
    "ConfigError::SharedPeerUrl.first",
    "ConfigError::SharedPeerUrl.second",
    "ConfigError::SharedPeerUrl.url",
    "ConfigError::WildcardAdvertised.url",
    "DurationError.text",
    "ServerError::Listen.url",
    "AutoCompactionError::RevisionRetention.retention",
    "AutoCompactionError::UnknownMode.mode",
    "ConnectError::Connect.addr",
    "UnknownFaultClass.0",
    "UnknownProfile.0",
    // The module a `mod` declaration names.
    "LoadError::MissingFile.module",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace directory exists")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every crate root of the workspace, loaded.
fn crates() -> Vec<(PathBuf, ModuleTree)> {
    let roots = crate_roots(&workspace()).unwrap();
    // A vacuous pass (no crates found) must not look like a clean one.
    assert!(roots.len() >= 15, "found only {roots:?}");
    roots
        .into_iter()
        .map(|root| {
            let tree = ModuleTree::load_from_disk(&root).unwrap();
            (root, tree)
        })
        .collect()
}

#[test]
fn no_import_circle_between_the_modules_of_a_crate() {
    let mut report = String::new();
    let mut modules_checked = 0;
    for (_, tree) in crates() {
        modules_checked += tree.modules.len();
        for circle in import_circles(&tree) {
            report += &circle.to_string();
        }
    }
    assert!(modules_checked > 200, "only {modules_checked} modules read");
    assert!(
        report.is_empty(),
        "import circles (break one by moving what both sides use into a \
         module of its own, or by having one side reach the other through \
         a trait defined apart):\n{}",
        report.replace(&format!("{}/", workspace().display()), "")
    );
}

#[test]
fn every_text_field_of_a_library_error_is_reviewed() {
    let data: BTreeSet<&str> = TEXT_THAT_IS_DATA.iter().copied().collect();
    let mut found = BTreeSet::new();
    let mut unreviewed = Vec::new();
    for (root, tree) in crates() {
        if !root.ends_with("src/lib.rs") {
            continue;
        }
        for payload in text_payloads(&tree) {
            let key = payload.key();
            if !data.contains(key.as_str()) {
                unreviewed.push(format!("{} ({})", key, relative(&payload.file)));
            }
            found.insert(key);
        }
    }
    assert!(
        unreviewed.is_empty(),
        "text in error types, not reviewed: a message belongs in a typed \
         variant (or a typed #[source]); data the user gave goes into \
         TEXT_THAT_IS_DATA with its reason:\n{}",
        unreviewed.join("\n")
    );
    let stale: Vec<&&str> = data.iter().filter(|key| !found.contains(**key)).collect();
    assert!(
        stale.is_empty(),
        "reviewed entries that no longer exist: remove them: {stale:?}"
    );
}

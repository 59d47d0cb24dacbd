//! The address book: which address each peer listens on, kept in a small
//! file so a restarted node can reach members it learned about at run time
//! (e.g. a learner added through another node).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use keel_raft::NodeId;

/// Reads the address book; a missing file is an empty book.
pub(crate) fn load(path: &Path) -> io::Result<BTreeMap<NodeId, String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let parsed = line
                .split_once(' ')
                .and_then(|(id, addr)| Some((NodeId(id.parse().ok()?), addr.trim().to_owned())));
            parsed.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: bad line {line:?}; expected \"<id> <host:port>\"",
                        path.display()
                    ),
                )
            })
        })
        .collect()
}

/// Replaces the address book atomically: write a temporary file, sync it,
/// rename it over the old one, sync the directory.
pub(crate) fn save(path: &Path, peers: &BTreeMap<NodeId, String>) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    for (id, addr) in peers {
        writeln!(file, "{id} {addr}")?;
    }
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_book_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        assert!(load(&path).unwrap().is_empty());
        let book = BTreeMap::from([
            (NodeId(1), "127.0.0.1:7001".to_owned()),
            (NodeId(2), "[::1]:7002".to_owned()),
        ]);
        save(&path, &book).unwrap();
        assert_eq!(load(&path).unwrap(), book);
    }
}

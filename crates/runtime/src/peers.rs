//! The address book file of data directories written before
//! configurations carried their members' addresses: builds of then saved
//! the addresses they knew in it, so that a restart could reach members
//! learned at run time. It is read, never written: a member upgraded in
//! place takes from it the addresses its configuration does not record.

use std::collections::BTreeMap;
use std::fs;
use std::io;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The format older builds wrote: `<id> <address>` per line.
    #[test]
    fn an_old_book_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        assert!(load(&path).unwrap().is_empty());
        fs::write(&path, "1 127.0.0.1:7001\n2 [::1]:7002\n").unwrap();
        let book = BTreeMap::from([
            (NodeId(1), "127.0.0.1:7001".to_owned()),
            (NodeId(2), "[::1]:7002".to_owned()),
        ]);
        assert_eq!(load(&path).unwrap(), book);
        fs::write(&path, "nonsense\n").unwrap();
        assert!(load(&path).is_err());
    }
}

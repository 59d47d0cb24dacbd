//! What a full-stack run checks besides linearizability: Election Safety
//! after every step, and at the end that no write was applied twice and
//! that members at the same revision hold the same data.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use keel_kv::mvcc::KeyRange;
use keel_kv::proto::mvccpb::event::EventType;
use keel_raft::{NodeId, Term};

use super::member::Member;
use crate::rng::Fnv;

/// Notes kept per run, for the report.
const NOTES_MAX: usize = 20;

#[derive(Debug, Default)]
pub struct Checks {
    /// The leader seen in each term.
    leaders: BTreeMap<Term, NodeId>,
    pub failure: Option<String>,
    /// Things worth knowing that are not violations (a member stopped).
    pub notes: Vec<String>,
}

impl Checks {
    /// Records the first violation; later ones follow from it.
    pub fn fail(&mut self, violation: String) {
        self.failure.get_or_insert(violation);
    }

    pub fn note(&mut self, note: String) {
        if self.notes.len() < NOTES_MAX {
            self.notes.push(note);
        }
    }

    /// Election Safety (§5.2): at most one leader per term.
    pub fn leader(&mut self, term: Term, id: NodeId) {
        let first = *self.leaders.entry(term).or_insert(id);
        if first != id {
            self.fail(format!("two leaders in term {term}: {first} and {id}"));
        }
    }

    /// The checks of a finished run over the members still up.
    pub fn at_end(&self, members: &[&Member]) -> Result<(), String> {
        let mut by_revision: BTreeMap<i64, (NodeId, u32)> = BTreeMap::new();
        for member in members {
            let store = member.kv.store();
            let (hash, revision, _) = store
                .hash_kv(0)
                .map_err(|e| format!("HashKV on member {} failed: {e}", member.id))?;
            match by_revision.get(&revision) {
                Some(&(other, other_hash)) if other_hash != hash => {
                    return Err(format!(
                        "members {other} and {} disagree at revision {revision}",
                        member.id
                    ));
                }
                _ => {
                    by_revision.insert(revision, (member.id, hash));
                }
            }
            exactly_once(member)?;
        }
        Ok(())
    }

    /// What the run ended with, to tell two runs of a seed apart.
    pub fn fingerprint(&self, members: &[&Member]) -> u64 {
        let mut h = Fnv::default();
        self.leaders.hash(&mut h);
        for member in members {
            member.id.hash(&mut h);
            if let Ok(hash) = member.kv.store().hash_kv(0) {
                hash.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// Every value a client writes is unique, so a value stored by two
/// revisions means one command took effect twice.
fn exactly_once(member: &Member) -> Result<(), String> {
    let store = member.kv.store();
    let revision = store.position().revision;
    let all = KeyRange::new(vec![0u8], vec![0u8]);
    let events = store
        .history(1, revision, &all, usize::MAX)
        .map_err(|e| format!("reading member {}'s history failed: {e}", member.id))?;
    let mut seen: BTreeMap<bytes::Bytes, i64> = BTreeMap::new();
    for event in events {
        if event.r#type != EventType::Put as i32 {
            continue;
        }
        let kv = event.kv.unwrap_or_default();
        if let Some(first) = seen.insert(kv.value.clone(), kv.mod_revision) {
            return Err(format!(
                "member {}: value {:?} written at revisions {first} and {}: a write applied twice",
                member.id,
                String::from_utf8_lossy(&kv.value),
                kv.mod_revision
            ));
        }
    }
    Ok(())
}

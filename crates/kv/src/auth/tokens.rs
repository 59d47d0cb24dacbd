//! etcd's simple tokens: `<16 random letters>.<log index>`, known to every
//! member that applied the Authenticate entry at that index, and forgotten
//! after `--auth-token-ttl` without use.
//!
//! Tokens are member-local memory, as in etcd: a restarted member knows
//! the tokens of the Authenticate entries it replays (from its last
//! snapshot on), and clients authenticate again on `invalid auth token`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

/// How many letters a token's random part has (etcd's length).
const PREFIX_LETTERS: usize = 16;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Expired tokens are swept when the table grows past this many, so an
/// idle client's token does not stay in memory for ever.
const SWEEP_ABOVE: usize = 4096;

/// A random token prefix, chosen by the member that checked the password.
pub fn token_prefix() -> String {
    let mut rng = rand::rng();
    (0..PREFIX_LETTERS)
        .map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())]))
        .collect()
}

/// How an applied auth command changes the token table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenChange {
    Assign {
        token: String,
        user: String,
    },
    /// The user was deleted or changed password: its tokens end.
    DropUser(String),
    /// Auth was disabled: every token ends.
    DropAll,
}

/// What a token lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenLookup {
    User(String),
    /// The token names a log index this member has not applied yet: it
    /// may be valid once the member catches up.
    NotYetApplied(u64),
    Invalid,
}

/// etcd's default `--auth-token-ttl`.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);

/// The member's tokens and when each was last used.
#[derive(Debug)]
pub struct SimpleTokens {
    /// How long a token lives unused, in milliseconds.
    ttl_millis: AtomicU64,
    tokens: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    user: String,
    last_used: Instant,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl_millis: AtomicU64::new(millis(ttl)),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how long a token lives unused (the member's `--auth-token-ttl`).
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_millis.store(millis(ttl), Ordering::Relaxed);
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_millis.load(Ordering::Relaxed))
    }

    pub fn apply(&self, change: TokenChange) {
        let mut tokens = self.tokens.lock().expect("token table poisoned by a panic");
        match change {
            TokenChange::Assign { token, user } => {
                if tokens.len() >= SWEEP_ABOVE {
                    let ttl = self.ttl();
                    tokens.retain(|_, e| e.last_used.elapsed() < ttl);
                }
                tokens.insert(
                    token,
                    Entry {
                        user,
                        last_used: Instant::now(),
                    },
                );
            }
            TokenChange::DropUser(user) => tokens.retain(|_, e| e.user != user),
            TokenChange::DropAll => tokens.clear(),
        }
    }

    /// The user of `token`, which counts as a use (the TTL restarts, as
    /// etcd's does); `applied_index` tells a token from the future.
    pub fn lookup(&self, token: &str, applied_index: u64) -> TokenLookup {
        let Some(index) = token
            .split_once('.')
            .and_then(|(_, index)| index.parse::<u64>().ok())
        else {
            return TokenLookup::Invalid;
        };
        let mut tokens = self.tokens.lock().expect("token table poisoned by a panic");
        match tokens.get_mut(token) {
            Some(e) if e.last_used.elapsed() < self.ttl() => {
                e.last_used = Instant::now();
                TokenLookup::User(e.user.clone())
            }
            Some(_) => {
                tokens.remove(token);
                TokenLookup::Invalid
            }
            None if index > applied_index => TokenLookup::NotYetApplied(index),
            None => TokenLookup::Invalid,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(t: &SimpleTokens, token: &str, user: &str) {
        t.apply(TokenChange::Assign {
            token: token.into(),
            user: user.into(),
        });
    }

    #[test]
    fn a_token_names_its_user_until_dropped() {
        let t = SimpleTokens::new(Duration::from_secs(60));
        assign(&t, "abc.5", "alice");
        assign(&t, "def.6", "bob");
        assert_eq!(t.lookup("abc.5", 6), TokenLookup::User("alice".into()));
        t.apply(TokenChange::DropUser("alice".into()));
        assert_eq!(t.lookup("abc.5", 6), TokenLookup::Invalid);
        assert_eq!(t.lookup("def.6", 6), TokenLookup::User("bob".into()));
        t.apply(TokenChange::DropAll);
        assert_eq!(t.lookup("def.6", 6), TokenLookup::Invalid);
    }

    #[test]
    fn an_unused_token_expires_after_its_ttl() {
        let t = SimpleTokens::new(Duration::from_millis(20));
        assign(&t, "abc.1", "alice");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(t.lookup("abc.1", 1), TokenLookup::Invalid);
    }

    #[test]
    fn malformed_and_future_tokens_are_told_apart() {
        let t = SimpleTokens::new(Duration::from_secs(60));
        assert_eq!(t.lookup("no-index", 1), TokenLookup::Invalid);
        assert_eq!(t.lookup("abc.x", 1), TokenLookup::Invalid);
        assert_eq!(t.lookup("abc.9", 3), TokenLookup::NotYetApplied(9));
        assert_eq!(t.lookup("abc.2", 3), TokenLookup::Invalid);
    }

    #[test]
    fn prefixes_are_sixteen_letters() {
        let p = token_prefix();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
    }
}

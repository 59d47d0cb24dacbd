//! [`Side`]: which side of a member a TLS flag is for, clients or peers.
//! Apart from `tls.rs` and `error.rs`, which both name it.

/// Which side a [`TlsConfig`] is for: the flag names differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Peer,
}

impl Side {
    /// The prefix of the side's TLS flags.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Side::Client => "",
            Side::Peer => "peer-",
        }
    }

    pub(crate) fn who(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
        }
    }
}

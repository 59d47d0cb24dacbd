//! Tuning knobs of one node. Every bound carries its unit in its name.

use crate::types::NodeId;

/// The default election timeout, in ticks: a follower campaigns after a
/// random timeout in `[10, 20)` ticks without a leader. The one place this
/// default is written; the runtime turns it into time with its tick.
pub const ELECTION_TICKS_DEFAULT: u32 = 10;

/// The default heartbeat period, in ticks: a leader beats every tick, well
/// below [`ELECTION_TICKS_DEFAULT`].
pub const HEARTBEAT_TICKS_DEFAULT: u32 = 1;

/// Configuration of one Raft node. Start from [`Config::new`] and adjust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never `0`.
    pub id: NodeId,
    /// A follower that hears nothing from a leader for a randomized timeout in
    /// `[election_ticks, 2 * election_ticks)` starts an election (§5.2).
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`. Must be well below
    /// `election_ticks` so that followers do not time out between beats.
    pub heartbeat_ticks: u32,
    /// Ask whether an election could be won before bumping the term (§9.6),
    /// so a node rejoining from a partition cannot inflate terms.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for
    /// `election_ticks`; followers then ignore vote requests while they
    /// believe a leader is alive (§6.2, "leader stickiness").
    pub check_quorum: bool,
    /// AppendEntries messages a leader may have outstanding to one follower
    /// in the `Replicate` state (pipelining).
    pub max_inflight_msgs: usize,
    /// Upper bound on the entry bytes in one AppendEntries message. A single
    /// entry larger than this is still sent, alone.
    pub max_msg_bytes: u64,
    /// A follower told that its connection to the leader closed
    /// ([`crate::Raft::peer_disconnected`]) stops following it and
    /// campaigns within a few ticks instead of waiting out the election
    /// timeout: a leader killed outright is replaced in milliseconds. A
    /// closed connection is only a hint (the leader may live on), so a
    /// follower acting on it also stops refusing votes for the leader's
    /// sake, and a leader lease can no longer be trusted: with this on,
    /// lease reads are confirmed as ReadIndex reads. Safety never rests on
    /// the hint; a false one costs at most a pre-vote round.
    pub fast_failover: bool,
    /// Ticks subtracted from `election_ticks` to bound the leader lease,
    /// allowing for clocks that run at different rates (§6.4.1).
    pub lease_drift_ticks: u32,
    /// Seeds the node's random election timeouts; fixing it makes runs
    /// reproducible.
    pub seed: u64,
    /// Deliberate protocol bugs, for proving that tests catch them.
    #[cfg(feature = "fault-injection")]
    pub bugs: Bugs,
}

/// Protocol rules that can be switched off to check that the simulator
/// notices. Each field names the rule it breaks.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Grant votes without the election restriction (§5.4.1).
    pub vote_without_log_check: bool,
    /// Commit entries of earlier terms by counting replicas (Figure 8).
    pub commit_previous_term_by_counting: bool,
    /// Serve ReadIndex reads without confirming leadership (§6.4).
    pub read_index_without_heartbeat: bool,
    /// Treat the leader lease as valid forever (§6.4.1).
    pub lease_never_expires: bool,
    /// Send a granted vote before the vote is durable (§5.2).
    pub vote_before_persist: bool,
    /// Decide commits and elections in a joint configuration by the
    /// incoming voters alone, ignoring the outgoing half (§4.3).
    pub joint_incoming_majority_only: bool,
    /// Keep leading without contact with a quorum: the leader never steps
    /// down at its check-quorum round (§6.2).
    pub check_quorum_ignored: bool,
}

/// Why a [`Config`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The node id is 0, which is reserved.
    #[error("node id 0 is reserved; give every node an id of 1 or more")]
    ZeroId,
    /// `heartbeat_ticks` is 0 or not below `election_ticks`.
    #[error(
        "heartbeat_ticks ({heartbeat_ticks}) must be at least 1 and less than election_ticks ({election_ticks})"
    )]
    HeartbeatNotBelowElection {
        /// The configured `heartbeat_ticks`.
        heartbeat_ticks: u32,
        /// The configured `election_ticks`.
        election_ticks: u32,
    },
    /// `max_inflight_msgs` is 0.
    #[error("max_inflight_msgs must be at least 1")]
    ZeroInflight,
    /// `max_msg_bytes` is 0.
    #[error("max_msg_bytes must be at least 1")]
    ZeroMsgBytes,
    /// `lease_drift_ticks` is not below `election_ticks`, so no lease could be held.
    #[error(
        "lease_drift_ticks ({lease_drift_ticks}) must be less than election_ticks ({election_ticks}) or no lease could ever be held"
    )]
    DriftTooLarge {
        /// The configured `lease_drift_ticks`.
        lease_drift_ticks: u32,
        /// The configured `election_ticks`.
        election_ticks: u32,
    },
}

impl Config {
    /// Defaults for node `id`: a [`ELECTION_TICKS_DEFAULT`] election
    /// timeout, a heartbeat every [`HEARTBEAT_TICKS_DEFAULT`] ticks,
    /// pre-vote and check-quorum on; fast failover off (it needs a
    /// transport that reports closed connections).
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            pre_vote: true,
            check_quorum: true,
            fast_failover: false,
            max_inflight_msgs: 256,
            max_msg_bytes: 1024 * 1024,
            lease_drift_ticks: 1,
            seed: id.0,
            #[cfg(feature = "fault-injection")]
            bugs: Bugs::default(),
        }
    }

    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat_ticks: self.heartbeat_ticks,
                election_ticks: self.election_ticks,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        if self.max_msg_bytes == 0 {
            return Err(ConfigError::ZeroMsgBytes);
        }
        if self.lease_drift_ticks >= self.election_ticks {
            return Err(ConfigError::DriftTooLarge {
                lease_drift_ticks: self.lease_drift_ticks,
                election_ticks: self.election_ticks,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    #[test]
    fn heartbeat_must_be_below_election() {
        let config = Config {
            heartbeat_ticks: 10,
            ..Config::new(NodeId(1))
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::HeartbeatNotBelowElection { .. })
        ));
        assert_eq!(Config::new(NodeId(0)).validate(), Err(ConfigError::ZeroId));
    }
}

//! Node configuration.

use crate::error::{Error, Result};
use crate::message::{NONE, NodeId};
use crate::read_only::ReadOnlyOption;

#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; must not be 0.
    pub id: NodeId,
    /// Ticks without hearing from a leader before a follower campaigns. The
    /// actual timeout is randomized in `[election_tick, 2 * election_tick)`.
    pub election_tick: u64,
    /// Ticks between leader heartbeats. Must be well below `election_tick`.
    pub heartbeat_tick: u64,
    /// The last index the application has applied (on restart), so
    /// committed entries are not handed out twice.
    pub applied: u64,
    /// Max bytes of entries per append message (at least one entry is sent).
    pub max_size_per_msg: u64,
    /// Max append messages in flight per follower in Replicate mode.
    pub max_inflight_msgs: usize,
    /// Max bytes of committed entries per `Ready`; `None` = unlimited.
    pub max_committed_size_per_ready: Option<u64>,
    /// Leader steps down if it has not heard from a quorum within an
    /// election timeout; followers ignore vote requests while they have
    /// heard from a leader within one (leader stickiness).
    pub check_quorum: bool,
    /// Run a pre-vote round (no term bump) before a real election, so a
    /// partitioned node rejoining cannot disrupt the cluster.
    pub pre_vote: bool,
    pub read_only_option: ReadOnlyOption,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk_size: usize,
    /// Snapshot chunks in flight per follower.
    pub max_snapshot_chunks_inflight: u64,
    /// Followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Seed for election-timeout randomization (mixed with `id`).
    pub seed: u64,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            ..Config::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.id == NONE {
            return Err(Error::ConfigInvalid("id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::ConfigInvalid("heartbeat_tick must be > 0".into()));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::ConfigInvalid(
                "election_tick must exceed heartbeat_tick".into(),
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::ConfigInvalid("max_inflight_msgs must be > 0".into()));
        }
        if self.snapshot_chunk_size == 0 || self.max_snapshot_chunks_inflight == 0 {
            return Err(Error::ConfigInvalid(
                "snapshot chunking limits must be > 0".into(),
            ));
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(Error::ConfigInvalid(
                "lease-based reads require check_quorum".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id: NONE,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_committed_size_per_ready: None,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            snapshot_chunk_size: 1 << 20,
            max_snapshot_chunks_inflight: 4,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }
}

//! `Ready`: everything the application must do on the node's behalf.

use crate::message::{Entry, HardState, Message, NodeId, Snapshot};
use crate::raft::StateRole;
use crate::read_only::ReadState;

/// Volatile state worth reporting but never persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader_id: NodeId,
    pub role: StateRole,
}

/// A batch of work for the application.
///
/// # Contract
///
/// Handle the fields in this order, then call `RawNode::advance(ready)`
/// before asking for the next `Ready`:
///
/// 1. **Persist** `snapshot` (if any, first: it replaces the log prefix),
///    then `entries` (overwriting any existing entries at the same indexes
///    and everything after them), then `hard_state` (if any). These writes
///    must be durable (fsync) before step 2. Raft's safety depends on it: a
///    vote, an acknowledged entry or a term must not be forgotten by a
///    crash once another node may have acted on it, and every such action
///    is triggered by one of this `Ready`'s messages.
/// 2. **Send** `messages`. Dropping, duplicating or reordering them is
///    tolerated; sending before step 1 completes is not.
/// 3. **Apply** `committed_entries` in order. They may include entries from
///    this very `Ready`'s `entries` (hence after step 1). For conf-change
///    entries call `RawNode::apply_conf_change`. Answer each `read_states`
///    request once the state machine has applied at least its `index`.
///
/// `must_sync` is false when nothing durable changed except the commit
/// index, which may be persisted lazily (it is recovered from the leader).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub read_states: Vec<ReadState>,
    pub entries: Vec<Entry>,
    pub snapshot: Option<Snapshot>,
    pub committed_entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub must_sync: bool,
}

//! `Ready`: everything the application must do on the node's behalf.
//!
//! ## The contract
//!
//! Handle a `Ready` strictly in this order, then call `RawNode::advance`:
//!
//! 1. **Persist** (durably, e.g. one WAL write + fsync when `must_sync`):
//!    `snapshot` (if any) first, then `entries` (appending; an entry at an
//!    index already stored replaces it and everything after it), then
//!    `hard_state` (if any).
//! 2. **Send** `messages`. Only after step 1: a vote or an append
//!    acknowledgement promises the state is durable, and the leader counts
//!    its own unpersisted entries as replicated, which is safe only because
//!    nothing leaves the node before they are on disk.
//! 3. **Apply** `snapshot` to the state machine (if any), then
//!    `committed_entries` in order. For entries of kind `ConfChange`, decode
//!    the change and call `RawNode::apply_conf_change`. Serve `read_states`
//!    once the applied index reaches each one's `index`.
//! 4. Call `advance(ready)`.
//!
//! Never call `ready()` again before `advance` of the previous one.

use crate::message::{Entry, HardState, Message, Snapshot};
use crate::raft::SoftState;
use crate::read_only::ReadState;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Leader/role change since the last `Ready`; informational.
    pub soft_state: Option<SoftState>,
    /// Changed hard state to persist.
    pub hard_state: Option<HardState>,
    /// Answers to read-index requests.
    pub read_states: Vec<ReadState>,
    /// Entries to persist (may overwrite a suffix of stored entries).
    pub entries: Vec<Entry>,
    /// Snapshot from the leader to persist and apply.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send after persisting.
    pub messages: Vec<Message>,
    /// Whether the persistence must be synchronous (fsync). False when only
    /// the commit index moved: a lost commit index is re-learned.
    pub must_sync: bool,
}

impl Ready {
    /// The index applied once this `Ready` has been handled.
    pub fn applied_cursor(&self) -> Option<u64> {
        if let Some(e) = self.committed_entries.last() {
            return Some(e.index);
        }
        self.snapshot.as_ref().map(|s| s.metadata.index)
    }
}

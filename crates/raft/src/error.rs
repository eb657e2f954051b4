//! Error types. Storage errors are part of the protocol (a compacted index
//! makes the leader send a snapshot), so they are a small closed enum rather
//! than a boxed error.

use std::fmt;

/// Why a [`crate::Storage`] read could not be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The index is at or below the first index (compacted into a snapshot).
    Compacted,
    /// The index is beyond the last index.
    Unavailable,
    /// A snapshot older than the current one was offered.
    SnapshotOutOfDate,
    /// The snapshot is being produced; the leader retries later.
    SnapshotTemporarilyUnavailable,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            StorageError::Compacted => "requested index is compacted",
            StorageError::Unavailable => "requested index is unavailable",
            StorageError::SnapshotOutOfDate => "snapshot is out of date",
            StorageError::SnapshotTemporarilyUnavailable => "snapshot temporarily unavailable",
        };
        f.write_str(s)
    }
}

impl std::error::Error for StorageError {}

/// Errors returned by the node API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The proposal could not be accepted (no leader, leadership transfer in
    /// progress, a conf change is already pending, ...). Retry later.
    ProposalDropped,
    /// A local-only message type was passed to `step`.
    StepLocalMsg,
    /// A response came from a peer not in the configuration.
    StepPeerNotFound,
    /// The configuration is invalid.
    ConfigInvalid(String),
    Storage(StorageError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProposalDropped => f.write_str("raft proposal dropped"),
            Error::StepLocalMsg => f.write_str("cannot step raft local message"),
            Error::StepPeerNotFound => f.write_str("cannot step as peer not found"),
            Error::ConfigInvalid(s) => write!(f, "invalid raft config: {s}"),
            Error::Storage(e) => write!(f, "raft storage: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        Error::Storage(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

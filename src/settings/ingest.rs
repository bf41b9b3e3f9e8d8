//! `[ingest]`: how many mails go into one database commit, and how much memory the mail in flight may hold.

use serde::Deserialize;

use super::check::positive;

/// Mails per database commit: large enough to amortise the commit, small enough that a crash redoes little.
const DEFAULT_BATCH_SIZE: usize = 64;

/// The default ceiling on mail in flight across every mailbox (`pipeline::budget`): 64 MB.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// Batching of mail processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    /// Mails processed per database commit (at least 1).
    pub batch_size: usize,
    /// The ceiling, in megabytes, on the mail fetched, evaluated and committing across every mailbox at once
    /// (`pipeline::budget`).
    pub memory_mb: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawIngest {
    batch_size: Option<usize>,
    memory_mb: Option<u64>,
}

/// Validates `[ingest]`.
pub(super) fn validate(problems: &mut Vec<String>, raw: RawIngest) -> IngestSettings {
    IngestSettings {
        batch_size: positive(
            problems,
            "ingest.batch_size",
            raw.batch_size,
            DEFAULT_BATCH_SIZE,
        ),
        memory_mb: positive(
            problems,
            "ingest.memory_mb",
            raw.memory_mb,
            DEFAULT_MEMORY_MB,
        ),
    }
}

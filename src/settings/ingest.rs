//! `[ingest]`: how many mails go into one database commit.

use serde::Deserialize;

use super::check::positive;

/// Mails per database commit: large enough to amortise the commit, small enough that a crash redoes little.
const DEFAULT_BATCH_SIZE: usize = 64;

/// Batching of mail processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    /// Mails processed per database commit (at least 1).
    pub batch_size: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawIngest {
    batch_size: Option<usize>,
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
    }
}

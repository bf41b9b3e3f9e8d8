//! `taxinbox ingest` and the daemon's Maildir passes: local inputs read in batches, each batch through the one batch
//! path ([`crate::pipeline::batch`]), acknowledged only after its commit.
//!
//! Batching is what makes SQLite fast (one fsync per batch instead of per mail); it never weakens the guarantee:
//! a mail is acknowledged at its source only when the transaction holding it has committed, and a failed commit
//! leaves the whole batch unacknowledged, to be delivered again.

use crate::pipeline::batch::{self, Archive, Incoming, Shadow, Summary};
use crate::pipeline::{Pipeline, Report};
use crate::source::Input;
use crate::store::Store;
use chrono::{DateTime, Utc};

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Evaluate and write everything in one transaction, then roll it back: nothing stored, nothing acknowledged.
    pub dry_run: bool,
    /// Mails per transaction.
    pub batch_size: usize,
    /// Bytes of mail per transaction: a batch ends after the mail that reaches it, so large mail comes in smaller
    /// batches (`MemoryBudget::batch_bytes` of the configured budget; one batch is in memory at a time).
    pub max_batch_bytes: u64,
    /// Which mail is history (`ingest --archive`, a Maildir's `archive_before`): no notification, no task event.
    pub archive: Archive,
    /// The configured source's name (`[[maildirs]] name`), recorded as each mail's mailbox, as IMAP mail records its
    /// mailbox's; `None` records the input's kind (`stdin`, `maildir`, `file`).
    pub mailbox: Option<String>,
}

/// Runs `inputs` through the pipeline; `on_report` sees each mail's report once its batch has committed.
pub async fn ingest(
    store: &Store,
    pipeline: &Pipeline,
    inputs: &[Input],
    options: &IngestOptions,
    clock: &(dyn Fn() -> DateTime<Utc> + Sync),
    mut on_report: impl FnMut(&Report),
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let batch_size = options.batch_size.max(1);
    let mut dry_tx = if options.dry_run {
        Some(store.begin().await?)
    } else {
        None
    };
    let mut rest = inputs;
    while !rest.is_empty() {
        let mut read = Vec::with_capacity(batch_size.min(rest.len()));
        let mut mails = Vec::with_capacity(batch_size.min(rest.len()));
        let mut bytes = 0u64;
        let mut taken = 0;
        for input in rest.iter().take(batch_size) {
            if bytes >= options.max_batch_bytes {
                break;
            }
            taken += 1;
            match input.read() {
                Ok(raw) => {
                    bytes = bytes.saturating_add(raw.len() as u64);
                    mails.push(Incoming {
                        raw,
                        source: input.reference(),
                        mailbox: options
                            .mailbox
                            .clone()
                            .unwrap_or_else(|| input_kind(input).to_owned()),
                        archive: options.archive,
                    });
                    read.push(input);
                }
                Err(e) => {
                    tracing::error!(source = %input.reference(), "cannot read mail: {e:#}");
                    summary
                        .unreadable
                        .push((input.reference(), format!("{e:#}")));
                }
            }
        }
        rest = &rest[taken..];
        let reports = match dry_tx.as_mut() {
            Some(tx) => {
                let evaluated = batch::evaluate(pipeline, mails, Shadow::Skip, clock());
                batch::write(tx, pipeline, &evaluated).await?
            }
            None => {
                let evaluated = batch::evaluate(pipeline, mails, Shadow::Evaluate, clock());
                let reports =
                    batch::commit(store, pipeline, &evaluated, async |_, _| Ok(())).await?;
                for input in read {
                    // Committed: a failed acknowledgement only means the mail is seen again and recognised then.
                    if let Err(e) = input.acknowledge() {
                        tracing::warn!(source = %input.reference(), "committed but not acknowledged: {e:#}");
                    }
                }
                reports
            }
        };
        for r in &reports {
            summary.add(r);
            on_report(r);
        }
    }
    if let Some(tx) = dry_tx {
        tx.rollback().await?;
    }
    Ok(summary)
}

/// The kind of a local input, recorded as its mailbox: `stdin`, `maildir` or `file`.
fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Stdin => "stdin",
        Input::Maildir { .. } => "maildir",
        Input::File(_) => "file",
    }
}

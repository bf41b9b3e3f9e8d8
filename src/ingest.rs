//! Batch ingestion: many mails through the pipeline, several per transaction, acknowledged only after the commit.
//!
//! Batching is what makes SQLite fast (one fsync per batch instead of per mail); it never weakens the guarantee:
//! a mail is acknowledged at its source only when the transaction holding it has committed, and a failed commit
//! leaves the whole batch unacknowledged, to be delivered again.

use crate::pipeline::{Pipeline, Report, Status};
use crate::source::Input;
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Evaluate and write everything in one transaction, then roll it back: nothing stored, nothing acknowledged.
    pub dry_run: bool,
    /// Mails per transaction.
    pub batch_size: usize,
}

/// What a run did, for the closing summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub by_status: BTreeMap<String, usize>,
    /// Tasks created per assignee (the unassigned queue under "").
    pub tasks_by_assignee: BTreeMap<String, usize>,
    /// Source and error of every quarantined mail.
    pub quarantined: Vec<(String, String)>,
    /// Inputs that could not be read at all (left in place, not acknowledged).
    pub unreadable: Vec<(String, String)>,
}

impl Summary {
    fn add(&mut self, r: &Report) {
        *self
            .by_status
            .entry(r.status.as_str().to_owned())
            .or_default() += 1;
        for t in &r.tasks {
            *self
                .tasks_by_assignee
                .entry(t.assignee.clone().unwrap_or_default())
                .or_default() += 1;
        }
        if r.status == Status::Quarantined {
            self.quarantined
                .push((r.source.clone(), r.error.clone().unwrap_or_default()));
        }
    }

    pub fn total(&self) -> usize {
        self.by_status.values().sum()
    }
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
    for batch in inputs.chunks(batch_size) {
        let mut loaded = Vec::with_capacity(batch.len());
        for input in batch {
            match input.read() {
                Ok(raw) => loaded.push((input, raw)),
                Err(e) => {
                    tracing::error!(source = %input.reference(), "cannot read mail: {e:#}");
                    summary
                        .unreadable
                        .push((input.reference(), format!("{e:#}")));
                }
            }
        }
        let now = clock();
        let evaluations: Vec<_> = loaded
            .iter()
            .map(|(input, raw)| pipeline.evaluate(raw, mailbox_of(input), now))
            .collect();
        let mut reports = Vec::with_capacity(loaded.len());
        match dry_tx.as_mut() {
            Some(tx) => {
                for ((input, raw), eval) in loaded.iter().zip(&evaluations) {
                    reports.push(
                        pipeline
                            .commit(tx, &input.reference(), mailbox_of(input), raw, eval, now)
                            .await?,
                    );
                }
            }
            None => {
                // Shadow mode: the candidate rules' decisions (live mail only, never a dry run), stored beside each
                // mail in the same transaction.
                let shadows: Vec<_> = loaded
                    .iter()
                    .map(|(input, raw)| {
                        crate::rules::shadow::evaluate(pipeline, raw, mailbox_of(input), now)
                    })
                    .collect();
                let mut tx = store.begin().await?;
                for (((input, raw), eval), shadow) in loaded.iter().zip(&evaluations).zip(&shadows)
                {
                    let report = pipeline
                        .commit(
                            &mut tx,
                            &input.reference(),
                            mailbox_of(input),
                            raw,
                            eval,
                            now,
                        )
                        .await?;
                    crate::rules::shadow::record(&mut tx, shadow.as_ref(), eval, &report, now)
                        .await?;
                    reports.push(report);
                }
                tx.commit().await?;
                for (input, _) in &loaded {
                    // Committed: a failed acknowledgement only means the mail is seen again and recognised then.
                    if let Err(e) = input.acknowledge() {
                        tracing::warn!(source = %input.reference(), "committed but not acknowledged: {e:#}");
                    }
                }
            }
        }
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

fn mailbox_of(input: &Input) -> &'static str {
    match input {
        Input::Stdin => "stdin",
        Input::Maildir { .. } => "maildir",
        Input::File(_) => "file",
    }
}

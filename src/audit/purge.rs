//! `audit purge` and the daemon's daily purge: after `[audit] retention_days` the raw bytes of a mail are emptied;
//! the hash and size stay, and each purge is a log entry itself, so the log stays provable.

use crate::settings::AuditSettings;
use crate::store::{self, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};

/// What a purge did, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    pub retention_days: Option<u32>,
    pub stored_before: Option<String>,
    pub purged: usize,
    pub bytes: i64,
    pub entries: Vec<i64>,
    pub dry_run: bool,
}

impl std::fmt::Display for PurgeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(days), Some(before)) = (self.retention_days, &self.stored_before) else {
            return write!(
                f,
                "audit.retention_days = 0: raw mail is kept forever, nothing purged"
            );
        };
        let verb = if self.dry_run {
            "would purge"
        } else {
            "purged"
        };
        write!(
            f,
            "{verb} the raw content of {} mail(s), {} bytes, stored before {before} (retention {days} days)",
            self.purged, self.bytes
        )?;
        if !self.entries.is_empty() {
            let entries: Vec<String> = self.entries.iter().map(i64::to_string).collect();
            write!(
                f,
                "; hashes kept, logged as entr(ies) {}",
                entries.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Empties the raw content of mail stored longer than the retention period before `now`, a batch per
/// transaction, each batch logged. Mail still in quarantine is kept.
pub async fn purge_expired(
    store: &Store,
    settings: &AuditSettings,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<PurgeSummary> {
    let Some(days) = settings.retention_days else {
        return Ok(PurgeSummary::default());
    };
    let cutoff = store::timestamp(now - chrono::Duration::days(i64::from(days)));
    let at = store::timestamp(now);
    let mut summary = PurgeSummary {
        retention_days: Some(days),
        stored_before: Some(cutoff.clone()),
        dry_run,
        ..PurgeSummary::default()
    };
    loop {
        let mut tx = store.begin().await?;
        let step = store::purge_raw_mail(&mut tx, &cutoff, days, &at, dry_run).await?;
        tx.commit().await.context("commit a purge of raw mail")?;
        summary.purged += step.purged;
        summary.bytes += step.bytes;
        summary.entries.extend(step.entry);
        if dry_run || step.purged == 0 {
            return Ok(summary);
        }
    }
}

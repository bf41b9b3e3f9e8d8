//! `taxinbox audit log|show|export|verify|purge`: every command but `purge` on a read-only connection.

use crate::app::Instance;
use crate::audit::{self, open_read_only};
use crate::store;
use anyhow::Context as _;
use chrono::{NaiveDate, TimeZone as _, Utc};
use clap::{Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The log, entry by entry, oldest first; filters select entries about matching mail.
    Log {
        #[command(flatten)]
        filter: FilterArgs,
        /// `text`: a line per entry; `jsonl`: one JSON object per entry.
        #[arg(long, value_enum, default_value = "text")]
        format: LogFormat,
    },
    /// The whole story of one mail: raw headers, facts, decision, tasks, notifications, every log entry.
    Show {
        /// Message id (as `audit log`, `audit export` and `ingest --format jsonl` show it).
        id: i64,
    },
    /// One row per mail: a CSV that opens in a spreadsheet, or JSON lines.
    Export {
        /// `csv` (a header row, one row per mail; opens in a spreadsheet) or `jsonl` (docs/formats.md).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Check the hash chain, the stored raw mail and the stored decisions; names the first bad entry.
    Verify,
    /// Empty the raw content of mail older than `[audit] retention_days` (hashes stay); logged as an entry.
    Purge {
        /// Say what would be purged, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which mail `audit log` and `audit export` are about. Mail filters apply to a mail's current state.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// From this date (YYYY-MM-DD, inclusive): the entry's date for `log`, the received date for `export`.
    #[arg(long, value_name = "DATE")]
    pub from: Option<NaiveDate>,
    /// Up to this date (YYYY-MM-DD, inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<NaiveDate>,
    /// Only mail of this client.
    #[arg(long, value_name = "INN")]
    pub client: Option<String>,
    /// Only mail of this category (tax_demand, client_request, ignore, unclassified, …).
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Only mail with this status (processed, linked, quarantined).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

impl From<ExportFormat> for audit::ExportFormat {
    fn from(format: ExportFormat) -> audit::ExportFormat {
        match format {
            ExportFormat::Jsonl => audit::ExportFormat::Jsonl,
            ExportFormat::Csv => audit::ExportFormat::Csv,
        }
    }
}

pub async fn run(config: Option<&Path>, command: AuditCommand) -> anyhow::Result<ExitCode> {
    if let AuditCommand::Purge { dry_run } = command {
        let app = Instance::open(config).await?;
        let purged =
            audit::purge_expired(&app.store, &app.settings.audit, Utc::now(), dry_run).await?;
        writeln!(std::io::stdout(), "{purged}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let (settings, store) = open_read_only(config).await?;
    let tz = settings.general.timezone;
    let mut conn = store.acquire().await?;
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Log { filter, format } => {
            let lines = audit::log_lines(&mut conn, &entry_filter(&filter, tz)).await?;
            match format {
                LogFormat::Jsonl => {
                    for line in &lines {
                        writeln!(out, "{}", serde_json::to_string(line)?)?;
                    }
                }
                LogFormat::Text => out.write_all(audit::render_log(&lines, tz).as_bytes())?,
            }
        }
        AuditCommand::Show { id } => {
            let story = audit::story(&mut conn, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no message with id {id}"))?;
            out.write_all(audit::render_story(&story, tz).as_bytes())?;
        }
        AuditCommand::Export {
            format,
            output,
            filter,
        } => {
            let rows = audit::export_rows(&mut conn, &mail_filter(&filter)).await?;
            let mut bytes = Vec::new();
            audit::write_export(&mut bytes, format.into(), &rows)?;
            match output {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("write {}", path.display()))?,
                None => out.write_all(&bytes)?,
            }
        }
        AuditCommand::Verify => {
            // Read, never made: an auditor's copy of the key file (or none, and the plain chain is checked).
            let trust = audit::Trust {
                key: audit::key::load(&settings.audit.key_file)?,
                anchors: match &settings.audit.anchor_file {
                    Some(path) => Some(audit::anchor::read_anchors(path)?),
                    None => None,
                },
            };
            let verification = audit::verify_with(&mut conn, &trust).await?;
            out.write_all(verification.to_string().as_bytes())?;
            if !verification.is_intact() {
                return Ok(ExitCode::from(super::exit::AUDIT_NOT_INTACT));
            }
        }
        AuditCommand::Purge { .. } => anyhow::bail!("audit purge writes: it is not run read-only"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Start of a local calendar day as a stored instant.
fn day_start(date: NaiveDate, tz: chrono_tz::Tz) -> String {
    let local = date.and_time(chrono::NaiveTime::MIN);
    let instant = tz
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local));
    store::timestamp(instant)
}

fn entry_filter(args: &FilterArgs, tz: chrono_tz::Tz) -> store::EntryFilter {
    store::EntryFilter {
        at_from: args.from.map(|d| day_start(d, tz)),
        at_before: args.to.and_then(|d| d.succ_opt()).map(|d| day_start(d, tz)),
        client: args.client.clone(),
        category: args.category.clone(),
        status: args.status.clone(),
    }
}

fn mail_filter(args: &FilterArgs) -> store::MailFilter {
    store::MailFilter {
        received_from: args.from.map(|d| d.to_string()),
        received_to: args.to.map(|d| d.to_string()),
        client: args.client.clone(),
        category: args.category.clone(),
        status: args.status.clone(),
        mailbox: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_local_midnight() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default();
        assert_eq!(
            day_start(d, chrono_tz::Europe::Moscow),
            "2026-03-01T21:00:00.000Z"
        );
    }
}

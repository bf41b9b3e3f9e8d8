//! `audit log`: the log entry by entry, as auditors read it (a one-line summary per entry, local time).

use crate::store::{self};
use chrono::DateTime;
use serde::Serialize;
use std::fmt::Write as _;

/// One entry as `audit log --format jsonl` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub event: String,
    /// The mail the entry is about, if any.
    pub message: Option<i64>,
    /// SHA-256 of the raw mail the entry is about, if any.
    pub sha256: Option<String>,
    /// What the entry records, as written.
    pub payload: serde_json::Value,
    /// This entry's link in the chain.
    pub hash: String,
}

impl From<store::StoredEntry> for LogLine {
    fn from(e: store::StoredEntry) -> LogLine {
        LogLine {
            payload: serde_json::from_str(&e.payload)
                .unwrap_or(serde_json::Value::String(e.payload)),
            seq: e.seq,
            at: e.at,
            event: e.event,
            message: e.message,
            sha256: e.sha256,
            hash: e.hash,
        }
    }
}

pub async fn log_lines(
    conn: &mut sqlx::AnyConnection,
    filter: &store::EntryFilter,
) -> anyhow::Result<Vec<LogLine>> {
    Ok(store::log_entries(conn, filter)
        .await?
        .into_iter()
        .map(LogLine::from)
        .collect())
}

pub(super) fn local_time(at: &str, tz: chrono_tz::Tz) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

pub(super) fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// One line saying what an entry records, for people.
pub fn summary(line: &LogLine) -> String {
    let p = &line.payload;
    match line.event.as_str() {
        "mail_processed" | "mail_linked" | "mail_quarantined" | "mail_reprocessed" => {
            let r = &p["report"];
            let status = text(&r["status"]).unwrap_or_default();
            let mut s = match line.event.as_str() {
                "mail_reprocessed" => format!("reprocessed → {status}"),
                _ => status.clone(),
            };
            if let Some(c) = text(&r["category"]) {
                let _ = write!(s, " {c}");
                if let Some(k) = text(&r["kind"]) {
                    let _ = write!(s, "/{k}");
                }
            }
            if let Some(inn) = text(&r["client_inn"]) {
                let _ = write!(s, " client {inn}");
            }
            if let Some(rule) = text(&r["rule"]) {
                let _ = write!(s, " by {rule}");
            }
            if let Some(reason) = text(&p["reason"]).filter(|r| !r.is_empty()) {
                let _ = write!(s, " ({reason})");
            }
            if let Some(joins) = text(&r["joins"]) {
                let _ = write!(s, " joins {joins}");
            }
            let tasks = r["tasks"].as_array().map(Vec::len).unwrap_or(0);
            if tasks > 0 {
                let _ = write!(s, ", {tasks} task(s)");
            }
            if let Some(error) = text(&r["error"]) {
                let _ = write!(s, ": {error}");
            }
            s
        }
        "notification_sent" | "notification_failed" => {
            let mut s = format!(
                "{} to {}",
                text(&p["kind"]).unwrap_or_default(),
                text(&p["recipient"]).unwrap_or_default()
            );
            if let Some(error) = text(&p["error"]) {
                let _ = write!(s, ": {error}");
            }
            s
        }
        "ruleset_loaded" => format!(
            "{} ({})",
            text(&p["version"]).unwrap_or_default(),
            p["files"]
                .as_array()
                .map(|f| f.iter().filter_map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        "directory_imported" => format!(
            "{} client(s), {} accountant(s), absences {}",
            text(&p["clients"]).unwrap_or_default(),
            text(&p["accountants"]).unwrap_or_default(),
            text(&p["absences"]).unwrap_or_else(|| "unchanged".into())
        ),
        store::RAW_MAIL_PURGED => format!(
            "raw content of {} mail(s) purged ({} bytes, stored before {}, retention {} days)",
            text(&p["count"]).unwrap_or_default(),
            text(&p["bytes"]).unwrap_or_default(),
            text(&p["stored_before"]).unwrap_or_default(),
            text(&p["retention_days"]).unwrap_or_default()
        ),
        _ => {
            let mut s = p.to_string();
            if s.chars().count() > 120 {
                s = s.chars().take(117).collect::<String>() + "...";
            }
            s
        }
    }
}

pub fn render_log(lines: &[LogLine], tz: chrono_tz::Tz) -> String {
    let mut out = format!(
        "{:>6}  {:<19}  {:<20}  {:>6}  {}\n",
        "entry", "at", "event", "mail", "what"
    );
    for line in lines {
        let _ = writeln!(
            out,
            "{:>6}  {:<19}  {:<20}  {:>6}  {}",
            line.seq,
            local_time(&line.at, tz),
            line.event,
            line.message.map(|m| m.to_string()).unwrap_or_default(),
            summary(line)
        );
    }
    let _ = writeln!(out, "{} entr(ies)", lines.len());
    out
}

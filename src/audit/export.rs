//! `audit export`: one row per mail (CSV for spreadsheets, formula-looking cells quoted; or JSONL).

use crate::store::{self};
use serde::Serialize;
use std::collections::BTreeMap;

/// One mail as `audit export` writes it (the JSONL contract; CSV flattens the tasks into aligned cells).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportRow {
    pub id: i64,
    /// ISO date.
    pub received: String,
    pub mailbox: String,
    pub from: String,
    pub subject: String,
    pub client_inn: Option<String>,
    pub client_name: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub rule: Option<String>,
    pub ruleset: Option<String>,
    pub status: store::MessageStatus,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub tasks: Vec<ExportTask>,
    pub message_id: Option<String>,
    pub sha256: String,
    /// `kept`, `purged` or `missing`.
    pub raw_mail: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportTask {
    pub step: String,
    pub title: String,
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    pub status: store::TaskStatus,
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 19] = [
    "id",
    "received",
    "mailbox",
    "from",
    "subject",
    "client_inn",
    "client",
    "category",
    "kind",
    "rule",
    "ruleset_version",
    "status",
    "reason",
    "tasks",
    "assignees",
    "due_dates",
    "message_id",
    "sha256",
    "raw_mail",
];

/// Separates the tasks of one mail inside a cell, as the directory's CSV separates list items.
pub const LIST_SEPARATOR: &str = " | ";

pub async fn export_rows(
    conn: &mut sqlx::AnyConnection,
    filter: &store::MailFilter,
) -> anyhow::Result<Vec<ExportRow>> {
    let mails = store::mails(conn, filter).await?;
    let mut tasks: BTreeMap<i64, Vec<ExportTask>> = BTreeMap::new();
    for t in store::tasks_of_mails(conn, filter).await? {
        // The query joins each task to its mail, so every one has a message.
        let Some(message) = t.message else { continue };
        tasks.entry(message).or_default().push(ExportTask {
            step: t.step,
            title: t.title,
            assignee: t.assignee,
            due: t.due,
            status: t.status,
        });
    }
    Ok(mails
        .into_iter()
        .map(|m| ExportRow {
            tasks: tasks.remove(&m.id).unwrap_or_default(),
            raw_mail: match (m.raw_size, m.raw_kept) {
                (None, _) => "missing",
                (Some(_), true) => "kept",
                (Some(_), false) => "purged",
            },
            id: m.id,
            received: m.received_date,
            mailbox: m.mailbox,
            from: m.from_addr,
            subject: m.subject,
            client_inn: m.client_inn,
            client_name: m.client_name,
            category: m.category,
            kind: m.kind,
            rule: m.rule,
            ruleset: m.ruleset,
            status: m.status,
            reason: m.reason.or(m.error.clone()),
            error: m.error,
            message_id: m.message_id,
            sha256: m.sha256,
        })
        .collect())
}

/// A cell a spreadsheet shows as text: mail is written by strangers, and a subject such as `=HYPERLINK(…)` must
/// not become a formula in the auditor's spreadsheet (CSV injection), so such a cell gains a leading `'`.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// The export in `format`: what `audit export` writes and the web view's auditor downloads.
pub fn write_export(
    out: &mut impl std::io::Write,
    format: ExportFormat,
    rows: &[ExportRow],
) -> anyhow::Result<()> {
    match format {
        ExportFormat::Csv => write_csv(out, rows),
        ExportFormat::Jsonl => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
            Ok(())
        }
    }
}

/// CSV for spreadsheets: UTF-8 with a byte-order mark (so Excel reads Cyrillic right), a header row, one row per
/// mail; a mail's tasks, assignees and due dates are aligned lists in their cells.
pub fn write_csv(out: &mut impl std::io::Write, rows: &[ExportRow]) -> anyhow::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    let o = |s: &Option<String>| cell(s.as_deref().unwrap_or(""));
    for r in rows {
        let list = |f: &dyn Fn(&ExportTask) -> String| {
            r.tasks
                .iter()
                .map(|t| cell(&f(t)))
                .collect::<Vec<_>>()
                .join(LIST_SEPARATOR)
        };
        w.write_record([
            r.id.to_string(),
            cell(&r.received),
            cell(&r.mailbox),
            cell(&r.from),
            cell(&r.subject),
            o(&r.client_inn),
            o(&r.client_name),
            o(&r.category),
            o(&r.kind),
            o(&r.rule),
            o(&r.ruleset),
            cell(r.status.as_str()),
            o(&r.reason),
            list(&|t| format!("{}: {}", t.step, t.title)),
            list(&|t| t.assignee.clone().unwrap_or_else(|| "(unassigned)".into())),
            list(&|t| t.due.clone()),
            o(&r.message_id),
            cell(&r.sha256),
            r.raw_mail.to_owned(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_a_spreadsheet_would_run_as_formulas_are_quoted() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("Требование № 12"), "Требование № 12");
        assert_eq!(cell("2026-03-02"), "2026-03-02");
    }
}

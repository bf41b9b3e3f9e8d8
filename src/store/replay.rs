//! Reading past decisions for `taxinbox rules replay`: what each stored mail was decided, to compare with what a
//! candidate ruleset would decide now. Read-only: nothing here writes.

use anyhow::Context as _;
use sqlx::{AnyConnection, Row as _};

/// One stored mail and its decision as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    pub id: i64,
    pub sha256: String,
    pub source: String,
    pub mailbox: String,
    pub received_date: String,
    pub processed_at: String,
    pub status: String,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub rule: Option<String>,
    pub demand_number: Option<String>,
    pub demand_date: Option<String>,
    pub error: Option<String>,
    /// The tasks the mail created, as `(step, due)`, sorted.
    pub tasks: Vec<(String, String)>,
}

/// Every stored mail whose received date (ISO text, so it compares as a date) is on or after `since`, oldest first.
pub async fn decisions_since(
    conn: &mut AnyConnection,
    since: &str,
) -> anyhow::Result<Vec<StoredDecision>> {
    let rows = sqlx::query(
        "SELECT id, sha256, source, mailbox, received_date, processed_at, status, category, kind, client_inn, rule, \
         demand_number, demand_date, error FROM messages WHERE received_date >= $1 ORDER BY id",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await
    .context("list stored decisions for replay")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(StoredDecision {
            id: row.try_get("id")?,
            sha256: row.try_get("sha256")?,
            source: row.try_get("source")?,
            mailbox: row.try_get("mailbox")?,
            received_date: row.try_get("received_date")?,
            processed_at: row.try_get("processed_at")?,
            status: row.try_get("status")?,
            category: row.try_get("category")?,
            kind: row.try_get("kind")?,
            client_inn: row.try_get("client_inn")?,
            rule: row.try_get("rule")?,
            demand_number: row.try_get("demand_number")?,
            demand_date: row.try_get("demand_date")?,
            error: row.try_get("error")?,
            tasks: Vec::new(),
        });
    }
    let tasks = sqlx::query(
        "SELECT t.message, t.step, t.due FROM tasks t JOIN messages m ON m.id = t.message \
         WHERE m.received_date >= $1 ORDER BY t.message, t.step, t.due",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await
    .context("list the tasks of stored decisions for replay")?;
    let index: std::collections::BTreeMap<i64, usize> =
        out.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    for row in &tasks {
        let message: i64 = row.try_get("message")?;
        if let Some(&i) = index.get(&message) {
            out[i]
                .tasks
                .push((row.try_get("step")?, row.try_get("due")?));
        }
    }
    Ok(out)
}

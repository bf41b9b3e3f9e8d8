//! Reading past decisions for `taxinbox rules replay`: what each stored mail was decided, to compare with what a
//! candidate ruleset would decide now. Read-only: nothing here writes.

use super::status::MessageStatus;
use anyhow::Context as _;
use sqlx::AnyConnection;

/// One stored mail and its decision as committed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDecision {
    pub id: i64,
    pub sha256: String,
    pub source: String,
    pub mailbox: String,
    pub received_date: String,
    pub processed_at: String,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub rule: Option<String>,
    pub demand_number: Option<String>,
    pub demand_date: Option<String>,
    pub error: Option<String>,
    /// The tasks the mail created, as `(step, due)`, sorted (read by a second query).
    #[sqlx(skip)]
    pub tasks: Vec<(String, String)>,
}

/// Every stored mail whose received date (ISO text, so it compares as a date) is on or after `since`, oldest first.
pub async fn decisions_since(
    conn: &mut AnyConnection,
    since: &str,
) -> anyhow::Result<Vec<StoredDecision>> {
    let mut out: Vec<StoredDecision> = sqlx::query_as(
        "SELECT id, sha256, source, mailbox, received_date, processed_at, status, category, kind, client_inn, rule, \
         demand_number, demand_date, error FROM messages WHERE received_date >= $1 ORDER BY id",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await
    .context("list stored decisions for replay")?;
    let tasks: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT t.message, t.step, t.due FROM tasks t JOIN messages m ON m.id = t.message \
         WHERE m.received_date >= $1 ORDER BY t.message, t.step, t.due",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await
    .context("list the tasks of stored decisions for replay")?;
    let index: std::collections::BTreeMap<i64, usize> =
        out.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    for (message, step, due) in tasks {
        if let Some(&i) = index.get(&message) {
            out[i].tasks.push((step, due));
        }
    }
    Ok(out)
}

//! Reading the processed-mail log and what it is about, for `taxinbox audit`: entries, mails, their tasks and
//! notifications, raw mail pages for verification, the export.
//!
//! Read-only on purpose: every query here runs for an auditor's role that may only `SELECT` (see
//! `deploy/postgres-auditor.sql`). The rows are store types; the audit command turns them into its own output.

use super::composed_sql;
use super::messages::{Task, TASK_COLUMNS};
use super::status::{IntBool, MessageStatus, NotificationStatus};
use anyhow::Context as _;
use sqlx::AnyConnection;
use std::collections::BTreeSet;

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEntry {
    pub seq: i64,
    pub at: String,
    pub event: String,
    pub message: Option<i64>,
    pub sha256: Option<String>,
    pub payload: String,
    pub hash: String,
}

/// Which entries `audit log` lists. Empty strings and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Entries at or after this RFC 3339 instant.
    pub at_from: Option<String>,
    /// Entries before this RFC 3339 instant.
    pub at_before: Option<String>,
    /// Only entries about mail of this client (by the mail's current state).
    pub client: Option<String>,
    /// Only entries about mail of this category.
    pub category: Option<String>,
    /// Only entries about mail with this status.
    pub status: Option<String>,
}

/// Which mails `audit export` lists, by their current state. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct MailFilter {
    /// Received on or after this ISO date.
    pub received_from: Option<String>,
    /// Received on or before this ISO date.
    pub received_to: Option<String>,
    pub client: Option<String>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub mailbox: Option<String>,
}

/// A stored mail with its decision and what is kept of its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailRow {
    pub id: i64,
    pub sha256: String,
    pub message_id: Option<String>,
    pub source: String,
    pub mailbox: String,
    pub fetched_at: String,
    pub received_date: String,
    pub from_addr: String,
    pub subject: String,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub client_name: Option<String>,
    pub demand_number: Option<String>,
    pub demand_date: Option<String>,
    pub case_id: Option<i64>,
    pub joins: Option<String>,
    pub rule: Option<String>,
    pub ruleset: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub facts: String,
    pub processed_at: String,
    /// Size of the raw mail as stored; `None` when the raw mail row is gone.
    pub raw_size: Option<i64>,
    /// Whether the raw bytes are still kept (false after a purge).
    #[sqlx(try_from = "IntBool")]
    pub raw_kept: bool,
}

/// A notification about a mail or one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub task: Option<i64>,
    pub recipient: String,
    pub subject: String,
    #[sqlx(try_from = "String")]
    pub status: NotificationStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

/// One stored raw mail, for checking its bytes against its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RawMailRow {
    pub sha256: String,
    pub size: i64,
    pub content: Option<Vec<u8>>,
}

/// A ruleset as the daemon recorded it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RulesetRow {
    pub version: String,
    pub loaded_at: String,
    pub files: String,
}

const ENTRY_COLUMNS: &str = "l.seq, l.at, l.event, l.message, l.sha256, l.payload, l.hash";

/// Versions of the migrations applied to this database; an error when it has no taxinbox schema at all.
pub async fn applied_migrations(conn: &mut AnyConnection) -> anyhow::Result<BTreeSet<i64>> {
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_all(&mut *conn)
            .await
            .context(
                "this database has no taxinbox schema (or this role may not read it): \
                 start taxinbox once with the service role, which creates it",
            )?;
    Ok(versions.into_iter().collect())
}

/// Log entries, oldest first. Mail filters keep only entries about a mail in that state.
pub async fn log_entries(
    conn: &mut AnyConnection,
    filter: &EntryFilter,
) -> anyhow::Result<Vec<StoredEntry>> {
    let mail_filter =
        filter.client.is_some() || filter.category.is_some() || filter.status.is_some();
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log l LEFT JOIN messages m ON m.id = l.message \
         WHERE ($1 = '' OR l.at >= $1) AND ($2 = '' OR l.at < $2) \
         AND ($3 = 0 OR m.id IS NOT NULL) \
         AND ($4 = '' OR m.client_inn = $4) AND ($5 = '' OR m.category = $5) AND ($6 = '' OR m.status = $6) \
         ORDER BY l.seq"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(filter.at_from.clone().unwrap_or_default())
        .bind(filter.at_before.clone().unwrap_or_default())
        .bind(i64::from(mail_filter))
        .bind(filter.client.clone().unwrap_or_default())
        .bind(filter.category.clone().unwrap_or_default())
        .bind(filter.status.clone().unwrap_or_default())
        .fetch_all(&mut *conn)
        .await
        .context("read the processed-mail log")
}

/// The newest link of the chain: its sequence number and hash.
pub async fn log_head(conn: &mut AnyConnection) -> anyhow::Result<(i64, String)> {
    sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .context("read the head of the processed-mail log")
}

/// The stored hash and MAC of entry `seq`, when there is one (what an anchor line is compared with).
pub async fn entry_link(
    conn: &mut AnyConnection,
    seq: i64,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    sqlx::query_as("SELECT hash, mac FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await
        .with_context(|| format!("read entry {seq} of the processed-mail log"))
}

/// Every entry about one mail (its processing, reprocessing, notifications), oldest first.
pub async fn entries_of_message(
    conn: &mut AnyConnection,
    message: i64,
) -> anyhow::Result<Vec<StoredEntry>> {
    let sql =
        format!("SELECT {ENTRY_COLUMNS} FROM audit_log l WHERE l.message = $1 ORDER BY l.seq");
    sqlx::query_as(composed_sql(sql))
        .bind(message)
        .fetch_all(&mut *conn)
        .await
        .context("read the log entries of a mail")
}

/// Every entry of one event, oldest first.
pub async fn entries_with_event(
    conn: &mut AnyConnection,
    event: &str,
) -> anyhow::Result<Vec<StoredEntry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM audit_log l WHERE l.event = $1 ORDER BY l.seq");
    sqlx::query_as(composed_sql(sql))
        .bind(event)
        .fetch_all(&mut *conn)
        .await
        .context("read log entries by event")
}

/// The newest entry about each mail, keyed by message id (the entry the mail's stored state must agree with).
pub async fn latest_mail_entries(
    conn: &mut AnyConnection,
) -> anyhow::Result<std::collections::BTreeMap<i64, StoredEntry>> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log l WHERE l.message IS NOT NULL \
         AND l.event IN ('mail_processed', 'mail_linked', 'mail_quarantined', 'mail_reprocessed') ORDER BY l.seq"
    );
    let rows: Vec<StoredEntry> = sqlx::query_as(composed_sql(sql))
        .fetch_all(&mut *conn)
        .await
        .context("read the mail entries of the log")?;
    let mut latest = std::collections::BTreeMap::new();
    for e in rows {
        if let Some(m) = e.message {
            latest.insert(m, e);
        }
    }
    Ok(latest)
}

/// The first entry naming a raw mail hash.
pub async fn first_entry_with_sha(
    conn: &mut AnyConnection,
    sha256: &str,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar("SELECT MIN(seq) AS seq FROM audit_log WHERE sha256 = $1")
        .bind(sha256)
        .fetch_one(&mut *conn)
        .await
        .context("find the entry of a raw mail")
}

/// Hashes the log names whose raw mail row does not exist at all.
pub async fn logged_hashes_without_raw_mail(
    conn: &mut AnyConnection,
) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT l.sha256 FROM audit_log l LEFT JOIN raw_mail r ON r.sha256 = l.sha256 \
         WHERE l.sha256 IS NOT NULL AND r.sha256 IS NULL ORDER BY l.sha256",
    )
    .fetch_all(&mut *conn)
    .await
    .context("look for raw mail the log names but the store lacks")
}

/// Raw mails in hash order after `after`, at most `limit`: verification pages through them instead of holding
/// years of mail in memory.
///
/// Compressed rows are decompressed; one that does not decompress is returned as stored, so that its hash check
/// names it as altered.
pub async fn raw_mail_page(
    conn: &mut AnyConnection,
    after: &str,
    limit: i64,
) -> anyhow::Result<Vec<RawMailRow>> {
    /// `sha256, size, content, encoding, parts` of a `raw_mail` row.
    type Row = (String, i64, Option<Vec<u8>>, String, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT sha256, size, content, encoding, parts FROM raw_mail WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read raw mail")?;
    let mut page = Vec::with_capacity(rows.len());
    for (sha256, size, content, encoding, parts) in rows {
        // A large mail's parts are read here, one row at a time; a missing part leaves the bytes short of their hash.
        let content = match content {
            Some(c) => {
                let (c, _) = super::messages::raw_content(conn, &sha256, c, parts).await?;
                Some(super::messages::unpack_raw_or_stored(&encoding, c, size))
            }
            None => None,
        };
        page.push(RawMailRow {
            content,
            sha256,
            size,
        });
    }
    Ok(page)
}

const MAIL_COLUMNS: &str = "m.id, m.sha256, m.message_id, m.source, m.mailbox, m.fetched_at, m.received_date, \
    m.from_addr, m.subject, m.status, m.category, m.kind, m.client_inn, c.name AS client_name, m.demand_number, \
    m.demand_date, m.case_id, m.joins, m.rule, m.ruleset, m.reason, m.error, m.facts, m.processed_at, \
    r.size AS raw_size, CAST(CASE WHEN r.content IS NULL THEN 0 ELSE 1 END AS BIGINT) AS raw_kept";

const MAIL_FROM: &str = "messages m LEFT JOIN raw_mail r ON r.sha256 = m.sha256 \
    LEFT JOIN clients c ON c.inn = m.client_inn";

/// The conditions `filter` sets on the mails `m`, as a `WHERE` clause (empty when it sets none) whose placeholders
/// start after `bound` values already in the query, and the values to bind in order. Only the filters in use become
/// conditions, so each can use its index (a `$n = '' OR …` could not).
pub(crate) fn mail_conditions(filter: &MailFilter, bound: usize) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    for (column, op, value) in [
        ("received_date", ">=", &filter.received_from),
        ("received_date", "<=", &filter.received_to),
        ("client_inn", "=", &filter.client),
        ("category", "=", &filter.category),
        ("status", "=", &filter.status),
        ("mailbox", "=", &filter.mailbox),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            values.push(v.to_owned());
            conditions.push(format!("m.{column} {op} ${}", bound + values.len()));
        }
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, values)
}

/// One stored mail with its decision.
pub async fn mail(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Option<MailRow>> {
    let sql = format!("SELECT {MAIL_COLUMNS} FROM {MAIL_FROM} WHERE m.id = $1");
    sqlx::query_as(composed_sql(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("read a mail")
}

/// Mails in the order they were stored.
pub async fn mails(conn: &mut AnyConnection, filter: &MailFilter) -> anyhow::Result<Vec<MailRow>> {
    let (clause, values) = mail_conditions(filter, 0);
    let sql = format!("SELECT {MAIL_COLUMNS} FROM {MAIL_FROM} {clause} ORDER BY m.id");
    let mut query = sqlx::query_as(composed_sql(sql));
    for v in values {
        query = query.bind(v);
    }
    query.fetch_all(&mut *conn).await.context("read mails")
}

/// The tasks of the mails a filter selects, by mail and then in creation order.
pub async fn tasks_of_mails(
    conn: &mut AnyConnection,
    filter: &MailFilter,
) -> anyhow::Result<Vec<Task>> {
    let (clause, values) = mail_conditions(filter, 0);
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN messages m ON m.id = t.message {clause} ORDER BY t.message, t.id"
    );
    let mut query = sqlx::query_as(composed_sql(sql));
    for v in values {
        query = query.bind(v);
    }
    query
        .fetch_all(&mut *conn)
        .await
        .context("read the tasks of mails")
}

/// The notifications about one mail or its tasks.
pub async fn notifications_of_message(
    conn: &mut AnyConnection,
    message: i64,
) -> anyhow::Result<Vec<NotificationRow>> {
    sqlx::query_as(
        "SELECT o.id, o.kind, o.task, o.recipient, o.subject, o.status, o.attempts, o.last_error, o.created_at, \
         o.sent_at FROM outbox o WHERE o.message = $1 \
         OR o.task IN (SELECT t.id FROM tasks t WHERE t.message = $1) ORDER BY o.id",
    )
    .bind(message)
    .fetch_all(&mut *conn)
    .await
    .context("read the notifications of a mail")
}

/// A ruleset the daemon recorded, by version.
pub async fn ruleset(
    conn: &mut AnyConnection,
    version: &str,
) -> anyhow::Result<Option<RulesetRow>> {
    sqlx::query_as("SELECT version, loaded_at, files FROM rulesets WHERE version = $1")
        .bind(version)
        .fetch_optional(&mut *conn)
        .await
        .context("read a ruleset")
}

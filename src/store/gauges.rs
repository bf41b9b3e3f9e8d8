//! The counts behind the daemon's gauges (`/metrics`): what waits and what is late. Each is one indexed `COUNT`
//! (or a `MAX` over an index), cheap enough for a scrape every few seconds on a store of 100,000 mails; the
//! metrics module still caches them for a while (`metrics::GAUGES_MAX_AGE`).

use anyhow::Context as _;
use sqlx::AnyConnection;

/// What waits in the store and what is late, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Notifications waiting to be sent (`outbox`, pending).
    pub outbox_pending: i64,
    /// Task events waiting for the firm's trackers (`sink_outbox`, pending).
    pub sink_pending: i64,
    /// Mail in quarantine, waiting for a person.
    pub quarantined: i64,
    /// Open tasks whose due date is before `today`.
    pub overdue_tasks: i64,
}

async fn count(
    conn: &mut AnyConnection,
    sql: &'static str,
    bind: Option<&str>,
) -> anyhow::Result<i64> {
    let query = sqlx::query_scalar::<_, i64>(sql);
    let query = match bind {
        Some(value) => query.bind(value.to_owned()),
        None => query,
    };
    query
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("count for the gauges: {sql}"))
}

/// The backlog as of `today` (`YYYY-MM-DD`, the firm's day).
pub async fn backlog(conn: &mut AnyConnection, today: &str) -> anyhow::Result<Backlog> {
    Ok(Backlog {
        outbox_pending: count(
            conn,
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            None,
        )
        .await?,
        sink_pending: count(
            conn,
            "SELECT COUNT(*) FROM sink_outbox WHERE status = 'pending'",
            None,
        )
        .await?,
        quarantined: count(
            conn,
            "SELECT COUNT(*) FROM messages WHERE status = 'quarantined'",
            None,
        )
        .await?,
        overdue_tasks: count(
            conn,
            "SELECT COUNT(*) FROM tasks WHERE status = 'open' AND due < $1",
            Some(today),
        )
        .await?,
    })
}

/// When mail of `mailbox` was last stored (`processed_at`, RFC 3339), `None` before the first.
pub async fn last_mail_of(
    conn: &mut AnyConnection,
    mailbox: &str,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT processed_at FROM messages WHERE mailbox = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(mailbox.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map(Option::flatten)
    .with_context(|| format!("the last mail of {mailbox}"))
}

/// Answers when the database does (`SELECT 1`).
pub async fn ping(conn: &mut AnyConnection) -> anyhow::Result<()> {
    sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .context("SELECT 1")?;
    Ok(())
}

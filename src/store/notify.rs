//! SQL of the notifier beyond the basic outbox: queue-once inserts (digests, escalations, admin notices keyed by
//! `dedupe_key`), the per-recipient cap, refused/held rows, and the reads that feed the templates.

use super::composed_sql;
use super::messages::{clean, NewNotification, TaskView, TASK_VIEW_COLUMNS, TASK_VIEW_FROM};
use super::status::NotificationStatus;
use anyhow::Context as _;
use sqlx::AnyConnection;

/// Queues a notification unless one with the same `dedupe_key` exists; `None` when it already did. Running the
/// digest or the escalation twice on the same day therefore queues nothing new.
pub async fn insert_notification_once(
    conn: &mut AnyConnection,
    n: &NewNotification,
    dedupe_key: &str,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO outbox (kind, task, message, recipient, subject, body, not_before, created_at, dedupe_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&n.kind)
    .bind(n.task)
    .bind(n.message)
    .bind(clean(&n.recipient))
    .bind(clean(&n.subject))
    .bind(clean(&n.body))
    .bind(&n.not_before)
    .bind(&n.created_at)
    .bind(dedupe_key)
    .fetch_optional(&mut *conn)
    .await
    .with_context(|| format!("queue notification {dedupe_key}"))
}

/// How many notifications went to `recipient` since `since` (RFC 3339), for the daily cap.
pub async fn sent_to_recipient_since(
    conn: &mut AnyConnection,
    recipient: &str,
    since: &str,
) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) AS n FROM outbox WHERE recipient = $1 AND status = 'sent' AND sent_at >= $2",
    )
    .bind(recipient)
    .bind(since)
    .fetch_one(&mut *conn)
    .await
    .context("count notifications sent to a recipient")
}

/// Sets a notification aside without sending it: `refused` (recipient not allowed) or `held` (over the cap).
/// The row keeps its text, so an admin can look at it and, if right, set it back to `pending`.
pub async fn set_notification_aside(
    conn: &mut AnyConnection,
    id: i64,
    status: NotificationStatus,
    reason: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(
            status,
            NotificationStatus::Refused | NotificationStatus::Held
        ),
        "a notification is set aside as refused or held, not {status}"
    );
    sqlx::query("UPDATE outbox SET status = $1, last_error = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(reason)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("set a notification aside")?;
    Ok(())
}

/// Whether `address` (lower-case) is a member of staff in the directory.
pub async fn is_staff(conn: &mut AnyConnection, address: &str) -> anyhow::Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) AS n FROM accountants WHERE lower(email) = $1")
            .bind(address)
            .fetch_one(&mut *conn)
            .await
            .context("look up a recipient in the directory")?;
    Ok(n > 0)
}

/// What a new-task notification tells about its task and the mail it came from.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct TaskNoticeFacts {
    pub title: String,
    pub due: String,
    pub client_inn: Option<String>,
    pub client_name: Option<String>,
    /// The mail's raw-content hash, to read its text and attachments; `None` for a tax-calendar task.
    pub sha256: Option<String>,
    pub subject: Option<String>,
    pub from_addr: Option<String>,
    pub received_date: Option<String>,
    pub step: String,
    pub case_id: Option<i64>,
}

/// The facts of task `task` for its notification; `None` if the task does not exist.
pub async fn task_notice_facts(
    conn: &mut AnyConnection,
    task: i64,
) -> anyhow::Result<Option<TaskNoticeFacts>> {
    sqlx::query_as(
        "SELECT t.title, t.due, t.client_inn, c.name AS client_name, m.sha256, m.subject, m.from_addr, \
         m.received_date, t.step, t.case_id FROM tasks t LEFT JOIN clients c ON c.inn = t.client_inn \
         LEFT JOIN messages m ON m.id = t.message WHERE t.id = $1",
    )
    .bind(task)
    .fetch_optional(&mut *conn)
    .await
    .with_context(|| format!("read task {task} for its notification"))
}

/// Open tasks due on or before `until` (ISO date), by due date then id, for digests and escalations.
pub async fn open_tasks_due_by(
    conn: &mut AnyConnection,
    until: &str,
) -> anyhow::Result<Vec<TaskView>> {
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} WHERE t.status = 'open' AND t.due <= $1 \
         ORDER BY t.due, t.id"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(until)
        .fetch_all(&mut *conn)
        .await
        .context("read open tasks")
}

/// A quarantined mail no admin has been told about yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuarantinedMail {
    pub id: i64,
    pub subject: String,
    pub from_addr: String,
    pub reason: String,
}

/// Up to `limit` quarantined mails without an `admin_quarantined` notice, oldest first; archived mail (history) is
/// never announced.
pub async fn quarantined_without_notice(
    conn: &mut AnyConnection,
    limit: i64,
) -> anyhow::Result<Vec<QuarantinedMail>> {
    sqlx::query_as(
        "SELECT m.id, m.subject, m.from_addr, COALESCE(m.error, m.reason, '') AS reason FROM messages m \
         WHERE m.status = 'quarantined' AND m.archived = 0 AND NOT EXISTS (SELECT 1 FROM outbox o \
         WHERE o.kind = 'admin_quarantined' AND o.message = m.id) ORDER BY m.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read quarantined mail")
}

/// Up to `limit` open tasks nobody could be assigned to, without an `admin_unassigned` notice, oldest first.
pub async fn unassigned_without_notice(
    conn: &mut AnyConnection,
    limit: i64,
) -> anyhow::Result<Vec<TaskView>> {
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} WHERE t.status = 'open' AND t.assignee IS NULL \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kind = 'admin_unassigned' AND o.task = t.id) \
         ORDER BY t.id LIMIT $1"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("read unassigned tasks")
}

//! SQL of a task tracker met as a real portal (Bitrix24): events put off without using up an attempt (a rate
//! limit), tasks the tracker lost (deleted there, or no longer visible to the webhook's owner), the deadline last
//! sent per task, the tracker's users found by e-mail, and what a tracker task shows of the firm (manager,
//! substitute, the original mail).

use super::messages::clean;
use anyhow::Context as _;
use sqlx::{AnyConnection, Row as _};
use std::collections::BTreeMap;

/// What is done with a task the tracker lost: a new tracker task is added.
pub const LOST_RECREATED: &str = "recreated";
/// What is done with a task the tracker lost: its later events are not sent.
pub const LOST_DROPPED: &str = "dropped";

/// Puts an event off until `not_before` without counting an attempt (the tracker asked to wait: a rate limit).
pub async fn defer_sink_event(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    not_before: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE sink_outbox SET status = 'pending', last_error = $1, not_before = $2 WHERE id = $3",
    )
    .bind(clean(error))
    .bind(not_before)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("put a sink event off")?;
    Ok(())
}

/// The deadline (ISO date) last sent to `sink` for `task`, if any was recorded.
pub async fn sink_task_due(
    conn: &mut AnyConnection,
    sink: &str,
    task: i64,
) -> anyhow::Result<Option<String>> {
    let row = sqlx::query("SELECT due FROM sink_tasks WHERE sink = $1 AND task = $2")
        .bind(sink)
        .bind(task)
        .fetch_optional(&mut *conn)
        .await
        .context("read the deadline sent for a task")?;
    Ok(row.map(|r| r.try_get("due")).transpose()?.flatten())
}

/// Records the deadline just sent to `sink` for `task` (the tracker's id is recorded already).
pub async fn set_sink_task_due(
    conn: &mut AnyConnection,
    sink: &str,
    task: i64,
    due: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE sink_tasks SET due = $1 WHERE sink = $2 AND task = $3")
        .bind(due)
        .bind(sink)
        .bind(task)
        .execute(&mut *conn)
        .await
        .context("record the deadline sent for a task")?;
    Ok(())
}

/// A tracker task that was lost, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSinkTask {
    pub sink: String,
    pub task: i64,
    /// The tracker's id of the task that was lost.
    pub remote_id: String,
    /// The event that found it.
    pub event_key: String,
    pub reason: String,
    /// [`LOST_RECREATED`] or [`LOST_DROPPED`].
    pub action: String,
    /// The tracker's id of the task added instead (`recreated`).
    pub new_remote_id: Option<String>,
    pub at: String,
}

/// Records a lost tracker task and forgets its id, so the task's events go on: with a new tracker task
/// (`new_remote_id`, action [`LOST_RECREATED`]) or with none ([`LOST_DROPPED`]).
pub async fn record_lost_sink_task(
    conn: &mut AnyConnection,
    lost: &LostSinkTask,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO sink_lost_tasks (sink, task, remote_id, event_key, reason, action, new_remote_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&lost.sink)
    .bind(lost.task)
    .bind(&lost.remote_id)
    .bind(&lost.event_key)
    .bind(clean(&lost.reason))
    .bind(&lost.action)
    .bind(lost.new_remote_id.as_deref())
    .bind(&lost.at)
    .execute(&mut *conn)
    .await
    .context("record a lost tracker task")?;
    sqlx::query("DELETE FROM sink_tasks WHERE sink = $1 AND task = $2")
        .bind(&lost.sink)
        .bind(lost.task)
        .execute(&mut *conn)
        .await
        .context("forget the id of a lost tracker task")?;
    Ok(())
}

/// Whether `task`'s tracker task in `sink` was lost and dropped (its events are then not sent).
pub async fn sink_task_dropped(
    conn: &mut AnyConnection,
    sink: &str,
    task: i64,
) -> anyhow::Result<bool> {
    let row = sqlx::query(
        "SELECT action FROM sink_lost_tasks WHERE sink = $1 AND task = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(sink)
    .bind(task)
    .fetch_optional(&mut *conn)
    .await
    .context("read whether a tracker task was dropped")?;
    Ok(match row {
        Some(r) => r.try_get::<String, _>("action")? == LOST_DROPPED,
        None => false,
    })
}

/// Every lost tracker task, oldest first (bounded: `taxinbox sinks status` shows the newest `limit`).
pub async fn lost_sink_tasks(
    conn: &mut AnyConnection,
    limit: i64,
) -> anyhow::Result<Vec<LostSinkTask>> {
    let rows = sqlx::query(
        "SELECT sink, task, remote_id, event_key, reason, action, new_remote_id, at FROM \
         (SELECT * FROM sink_lost_tasks ORDER BY id DESC LIMIT $1) l ORDER BY id",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read the lost tracker tasks")?;
    rows.iter()
        .map(|r| {
            Ok(LostSinkTask {
                sink: r.try_get("sink")?,
                task: r.try_get("task")?,
                remote_id: r.try_get("remote_id")?,
                event_key: r.try_get("event_key")?,
                reason: r.try_get("reason")?,
                action: r.try_get("action")?,
                new_remote_id: r.try_get("new_remote_id")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

/// The tracker's users of `sink` as last found by e-mail: e-mail → user id (`None`: not found) and when checked.
pub async fn sink_users(
    conn: &mut AnyConnection,
    sink: &str,
) -> anyhow::Result<BTreeMap<String, (Option<i64>, String)>> {
    let rows = sqlx::query("SELECT email, user_id, checked_at FROM sink_users WHERE sink = $1")
        .bind(sink)
        .fetch_all(&mut *conn)
        .await
        .context("read the tracker's users")?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("email")?,
                (r.try_get("user_id")?, r.try_get("checked_at")?),
            ))
        })
        .collect()
}

/// Replaces the tracker's users of `sink` found by e-mail with `users` (e-mail → id, `None`: not found).
pub async fn put_sink_users(
    conn: &mut AnyConnection,
    sink: &str,
    users: &BTreeMap<String, Option<i64>>,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM sink_users WHERE sink = $1")
        .bind(sink)
        .execute(&mut *conn)
        .await
        .context("forget the tracker's users")?;
    for (email, id) in users {
        sqlx::query(
            "INSERT INTO sink_users (sink, email, user_id, checked_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(sink)
        .bind(email)
        .bind(*id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .context("record a tracker's user")?;
    }
    Ok(())
}

/// The e-mails of the directory's accountants, sorted.
pub async fn accountant_emails(conn: &mut AnyConnection) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query("SELECT email FROM accountants ORDER BY email")
        .fetch_all(&mut *conn)
        .await
        .context("read the accountants' e-mails")?;
    rows.iter()
        .map(|r| Ok(r.try_get("email")?))
        .collect::<anyhow::Result<_>>()
}

/// Who else a tracker task names: the assignee's manager (an observer) and the client's backup accountant (a
/// co-worker), by e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkPeople {
    pub manager: Option<String>,
    pub substitute: Option<String>,
}

/// The manager of `assignee` and the backup accountant of the client `client_inn`, from the directory.
pub async fn sink_people(
    conn: &mut AnyConnection,
    assignee: Option<&str>,
    client_inn: Option<&str>,
) -> anyhow::Result<SinkPeople> {
    let mut people = SinkPeople::default();
    if let Some(assignee) = assignee {
        people.manager = sqlx::query("SELECT manager FROM accountants WHERE email = $1")
            .bind(assignee)
            .fetch_optional(&mut *conn)
            .await
            .context("read an accountant's manager")?
            .map(|r| r.try_get::<Option<String>, _>("manager"))
            .transpose()?
            .flatten()
            .filter(|m| !m.is_empty());
    }
    if let Some(inn) = client_inn {
        people.substitute = sqlx::query("SELECT backup_accountant FROM clients WHERE inn = $1")
            .bind(inn)
            .fetch_optional(&mut *conn)
            .await
            .context("read a client's backup accountant")?
            .map(|r| r.try_get::<Option<String>, _>("backup_accountant"))
            .transpose()?
            .flatten()
            .filter(|m| !m.is_empty());
    }
    Ok(people)
}

/// The raw bytes of the stored mail `message` (by its row id), if kept.
pub async fn raw_mail_of_message(
    conn: &mut AnyConnection,
    message: i64,
) -> anyhow::Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT sha256 FROM messages WHERE id = $1")
        .bind(message)
        .fetch_optional(&mut *conn)
        .await
        .context("read a mail's hash")?;
    let Some(row) = row else { return Ok(None) };
    let sha: String = row.try_get("sha256")?;
    super::raw_mail(conn, &sha).await
}

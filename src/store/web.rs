//! The web view's SQL: passwords, sessions, failed sign-ins, calendar-feed tokens, the task pages (with the done
//! and reassign writes) and the auditor's paged mail log.
//!
//! Secrets are stored only as hashes where the server never needs them back: a session is found by the SHA-256
//! of its id, a password by its argon2 PHC string, a calendar-feed token by its SHA-256 (shown once, at creation).

use super::composed_sql;
use super::messages::{TaskView, TASK_VIEW_COLUMNS, TASK_VIEW_FROM};
use super::status::MessageStatus;
use anyhow::Context as _;
use sqlx::AnyConnection;

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub email: String,
    /// The per-session token every POST form carries.
    pub csrf: String,
    pub expires_at: String,
}

/// One line of the auditor's log page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct MailListRow {
    pub id: i64,
    pub received_date: String,
    pub mailbox: String,
    pub from_addr: String,
    pub subject: String,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub rule: Option<String>,
    pub error: Option<String>,
}

/// What a mailbox last did, from the stored mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxActivity {
    pub mailbox: String,
    /// When its newest stored mail was fetched (RFC 3339).
    pub last_fetched: String,
}

pub async fn set_password(
    conn: &mut AnyConnection,
    email: &str,
    password_hash: &str,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM web_users WHERE email = $1")
        .bind(email)
        .execute(&mut *conn)
        .await
        .context("replace a password")?;
    sqlx::query("INSERT INTO web_users (email, password_hash, updated_at) VALUES ($1, $2, $3)")
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *conn)
        .await
        .context("store a password")?;
    // A new password ends every session of the person: whoever knew the old one is signed out.
    end_sessions_of(conn, email).await?;
    Ok(())
}

/// Ends every session of `email`; returns how many there were.
pub async fn end_sessions_of(conn: &mut AnyConnection, email: &str) -> anyhow::Result<u64> {
    Ok(sqlx::query("DELETE FROM web_sessions WHERE email = $1")
        .bind(email)
        .execute(&mut *conn)
        .await
        .context("end a person's sessions")?
        .rows_affected())
}

pub async fn password_hash(
    conn: &mut AnyConnection,
    email: &str,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM web_users WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await
        .context("read a password hash")
}

pub async fn create_session(
    conn: &mut AnyConnection,
    id_hash: &str,
    email: &str,
    csrf: &str,
    now: &str,
    expires_at: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, email, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id_hash)
    .bind(email)
    .bind(csrf)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *conn)
    .await
    .context("store a session")?;
    Ok(())
}

/// The session with this id hash, unless it expired before `now`.
pub async fn session(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: &str,
) -> anyhow::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT email, csrf, expires_at FROM web_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .context("read a session")
}

/// Ends one session, and forgets every expired one.
pub async fn end_session(conn: &mut AnyConnection, id_hash: &str, now: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at <= $2")
        .bind(id_hash)
        .bind(now)
        .execute(&mut *conn)
        .await
        .context("end a session")?;
    Ok(())
}

pub async fn record_login_failure(
    conn: &mut AnyConnection,
    account: &str,
    ip: &str,
    at: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO web_login_failures (account, ip, at) VALUES ($1, $2, $3)")
        .bind(account)
        .bind(ip)
        .bind(at)
        .execute(&mut *conn)
        .await
        .context("record a failed sign-in")?;
    Ok(())
}

/// Forgets failed sign-ins older than `before`: only the window is ever counted.
pub async fn forget_login_failures(conn: &mut AnyConnection, before: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM web_login_failures WHERE at < $1")
        .bind(before)
        .execute(&mut *conn)
        .await
        .context("forget old failed sign-ins")?;
    Ok(())
}

/// What [`purge_web_sessions`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebPurged {
    /// Sessions that expired before `now`.
    pub sessions: u64,
    /// Failed sign-ins older than the cut-off (each stays in the hash-chained log as `web_sign_in_failed`).
    pub login_failures: u64,
}

/// The daemon's daily purge of the web view's state: sessions expired before `now` (a signed-out or idle browser
/// leaves its row behind) and failed sign-ins older than `failures_before` (only the rate-limit window counts).
pub async fn purge_web_sessions(
    conn: &mut AnyConnection,
    now: &str,
    failures_before: &str,
) -> anyhow::Result<WebPurged> {
    let sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await
        .context("purge expired sessions")?
        .rows_affected();
    let login_failures = sqlx::query("DELETE FROM web_login_failures WHERE at < $1")
        .bind(failures_before)
        .execute(&mut *conn)
        .await
        .context("purge old failed sign-ins")?
        .rows_affected();
    let before_ms = chrono::DateTime::parse_from_rfc3339(failures_before)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    sqlx::query("DELETE FROM web_sign_in_throttle WHERE last_at_ms < $1 AND not_before_ms < $1")
        .bind(before_ms)
        .execute(&mut *conn)
        .await
        .context("purge old sign-in delays")?;
    Ok(WebPurged {
        sessions,
        login_failures,
    })
}

/// When `email`'s feed token was created, if they have one (the token itself is not stored).
pub async fn feed_token_created(
    conn: &mut AnyConnection,
    email: &str,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT created_at FROM web_feed_tokens WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await
        .context("read a calendar-feed token")
}

/// Gives `email` a new feed token, stored by its SHA-256 `token_hash`; the old one stops working.
pub async fn set_feed_token(
    conn: &mut AnyConnection,
    email: &str,
    token_hash: &str,
    now: &str,
) -> anyhow::Result<()> {
    revoke_feed_token(conn, email).await?;
    sqlx::query("INSERT INTO web_feed_tokens (email, token_hash, created_at) VALUES ($1, $2, $3)")
        .bind(email)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *conn)
        .await
        .context("store a calendar-feed token")?;
    Ok(())
}

/// Revokes `email`'s feed token; `false` when there was none.
pub async fn revoke_feed_token(conn: &mut AnyConnection, email: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query("DELETE FROM web_feed_tokens WHERE email = $1")
        .bind(email)
        .execute(&mut *conn)
        .await
        .context("revoke a calendar-feed token")?
        .rows_affected()
        > 0)
}

/// The owner of the feed token whose SHA-256 is `token_hash`.
pub async fn email_of_feed_token(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT email FROM web_feed_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await
        .context("find a calendar-feed token")
}

/// Claims one sign-in attempt under `key` at `now_ms`, atomically: the row's failure count goes up by one and
/// its next permitted attempt moves to `now_ms + delay(count)`, but only when `not_before_ms` has passed; a count
/// whose last attempt is older than `window_ms` starts again at one. Returns the new count, or
/// `Err(not_before_ms)` when the key must still wait until then. One statement (an upsert with a condition), so concurrent claims cannot both pass.
pub async fn claim_sign_in_attempt(
    conn: &mut AnyConnection,
    key: &str,
    now_ms: i64,
    window_ms: i64,
    delay_ms: impl Fn(i64) -> i64,
) -> anyhow::Result<Result<i64, i64>> {
    // The delay depends on the count the statement itself produces, so the row is claimed first (with the
    // earliest next attempt `now_ms`) and the delay written in the same transaction right after.
    let claimed: Option<i64> = sqlx::query_scalar(
        "INSERT INTO web_sign_in_throttle (key, failures, not_before_ms, last_at_ms) VALUES ($1, 1, $2, $2) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN web_sign_in_throttle.last_at_ms < $2 - $3 THEN 1 \
                      ELSE web_sign_in_throttle.failures + 1 END, \
           not_before_ms = $2, last_at_ms = $2 \
         WHERE web_sign_in_throttle.not_before_ms <= $2 \
         RETURNING failures",
    )
    .bind(key)
    .bind(now_ms)
    .bind(window_ms)
    .fetch_optional(&mut *conn)
    .await
    .context("claim a sign-in attempt")?;
    let Some(count) = claimed else {
        let not_before: i64 =
            sqlx::query_scalar("SELECT not_before_ms FROM web_sign_in_throttle WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .context("read a sign-in delay")?;
        return Ok(Err(not_before));
    };
    let delay = delay_ms(count);
    if delay > 0 {
        sqlx::query("UPDATE web_sign_in_throttle SET not_before_ms = $1 WHERE key = $2")
            .bind(now_ms + delay)
            .bind(key)
            .execute(&mut *conn)
            .await
            .context("set a sign-in delay")?;
    }
    Ok(Ok(count))
}

/// Forgets the attempts under `key` (a successful sign-in of that account).
pub async fn clear_sign_in_attempts(conn: &mut AnyConnection, key: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM web_sign_in_throttle WHERE key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await
        .context("clear sign-in attempts")?;
    Ok(())
}

/// Takes back one claimed attempt under `key` (a correct password from that address is no failure); its delay
/// is left as it is.
pub async fn release_sign_in_attempt(conn: &mut AnyConnection, key: &str) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE web_sign_in_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .execute(&mut *conn)
    .await
    .context("release a sign-in attempt")?;
    Ok(())
}

pub async fn web_task_by_id(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Option<TaskView>> {
    let sql = format!("SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} WHERE t.id = $1");
    sqlx::query_as(composed_sql(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("read a task")
}

/// The tasks of these people (open ones only, or all), by due date.
pub async fn web_tasks_of(
    conn: &mut AnyConnection,
    assignees: &[String],
    open_only: bool,
) -> anyhow::Result<Vec<TaskView>> {
    if assignees.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (2..assignees.len() + 2).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} \
         WHERE ($1 = 0 OR t.status = 'open') AND t.assignee IN ({}) ORDER BY t.due, t.id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as(composed_sql(sql)).bind(i64::from(open_only));
    for a in assignees {
        query = query.bind(a.as_str());
    }
    query
        .fetch_all(&mut *conn)
        .await
        .context("read tasks of people")
}

/// Open tasks of everyone (and the unassigned queue), by due date, at most `limit`.
pub async fn web_open_tasks(conn: &mut AnyConnection, limit: i64) -> anyhow::Result<Vec<TaskView>> {
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS} FROM {TASK_VIEW_FROM} \
         WHERE t.status = 'open' ORDER BY t.due, t.id LIMIT $1"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("read open tasks")
}

/// Marks an open task done; `false` when it was not open.
pub async fn mark_task_done(conn: &mut AnyConnection, id: i64) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE tasks SET status = 'done' WHERE id = $1 AND status = 'open'")
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("mark a task done")?;
    Ok(done.rows_affected() == 1)
}

/// Gives an open task to someone else; `false` when it was not open.
pub async fn reassign_task(conn: &mut AnyConnection, id: i64, to: &str) -> anyhow::Result<bool> {
    let moved = sqlx::query("UPDATE tasks SET assignee = $1 WHERE id = $2 AND status = 'open'")
        .bind(to)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("reassign a task")?;
    Ok(moved.rows_affected() == 1)
}

/// The stored mail, newest first, under the filters; `before` pages on (mail ids below it).
pub async fn mail_page(
    conn: &mut AnyConnection,
    filter: &super::MailFilter,
    before: Option<i64>,
    limit: i64,
) -> anyhow::Result<Vec<MailListRow>> {
    let (mut clause, values) = super::audit_read::mail_conditions(filter, 0);
    if before.is_some() {
        let id = format!("m.id < ${}", values.len() + 1);
        clause = if clause.is_empty() {
            format!("WHERE {id}")
        } else {
            format!("{clause} AND {id}")
        };
    }
    let limit_n = values.len() + usize::from(before.is_some()) + 1;
    let sql = format!(
        "SELECT m.id, m.received_date, m.mailbox, m.from_addr, m.subject, m.status, m.category, m.kind, \
         m.client_inn, m.rule, m.error FROM messages m {clause} ORDER BY m.id DESC LIMIT ${limit_n}"
    );
    let mut query = sqlx::query_as(composed_sql(sql));
    for v in &values {
        query = query.bind(v.as_str());
    }
    if let Some(b) = before {
        query = query.bind(b);
    }
    query
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("read a page of the mail log")
}

/// Quarantined mail, newest first, at most `limit`.
pub async fn quarantine_page(
    conn: &mut AnyConnection,
    limit: i64,
) -> anyhow::Result<Vec<MailListRow>> {
    mail_page(
        conn,
        &super::MailFilter {
            status: Some(MessageStatus::Quarantined.as_str().into()),
            ..Default::default()
        },
        None,
        limit,
    )
    .await
}

/// Per named mailbox that has stored mail: when its newest mail was fetched. One indexed look-up per name rather
/// than a GROUP BY over the whole log.
pub async fn mailbox_activity(
    conn: &mut AnyConnection,
    names: &[String],
) -> anyhow::Result<Vec<MailboxActivity>> {
    let mut out = Vec::new();
    for name in names {
        let last: Option<String> = sqlx::query_scalar(
            "SELECT fetched_at FROM messages WHERE mailbox = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .context("read a mailbox's newest mail")?;
        let Some(last_fetched) = last else { continue };
        out.push(MailboxActivity {
            mailbox: name.clone(),
            last_fetched,
        });
    }
    Ok(out)
}

/// Closes every open task due before `date` (ISO): builds the benchmark's synthetic log, where most tasks of a
/// long history are done, with one statement rather than one per task.
pub async fn close_tasks_due_before(conn: &mut AnyConnection, date: &str) -> anyhow::Result<u64> {
    let done = sqlx::query("UPDATE tasks SET status = 'done' WHERE status = 'open' AND due < $1")
        .bind(date)
        .execute(&mut *conn)
        .await
        .context("close old tasks")?;
    Ok(done.rows_affected())
}

/// Refreshes the query planner's statistics (`ANALYZE`, on either engine), as autovacuum or `PRAGMA optimize` do
/// in a running installation; the benchmark calls it after a bulk load so the filters' indexes are chosen.
pub async fn refresh_planner_statistics(conn: &mut AnyConnection) -> anyhow::Result<()> {
    sqlx::query("ANALYZE")
        .execute(&mut *conn)
        .await
        .context("refresh planner statistics")?;
    Ok(())
}

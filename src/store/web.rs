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
    /// The client's name from the directory, when the INN is known there.
    pub client_name: Option<String>,
    /// The demand number of the mail's case, if it joined one.
    pub demand_number: Option<String>,
    pub case_id: Option<i64>,
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

/// Which page of the mail log: the newest, older than a mail id, or newer than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogPage {
    #[default]
    Newest,
    /// Mail ids below this one (the next page).
    Before(i64),
    /// Mail ids above this one (the previous page).
    After(i64),
}

/// `LIKE` patterns for a search as typed, in lower case, in upper case and with a capital first letter (ООО,
/// ооо, Иванова, иванова): SQLite folds only ASCII
/// case and PostgreSQL none, while names and subjects are Cyrillic. `%` and `_` typed by a person match
/// themselves (escaped with `\`).
pub fn search_patterns(search: &str) -> Vec<String> {
    let typed = search.trim();
    let lower = typed.to_lowercase();
    let mut capital: String = lower.chars().take(1).flat_map(char::to_uppercase).collect();
    capital.extend(lower.chars().skip(1));
    let mut out: Vec<String> = Vec::new();
    let upper = typed.to_uppercase();
    for v in [typed.to_owned(), lower, upper, capital] {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        if !out.contains(&pattern) {
            out.push(pattern);
        }
    }
    out
}

/// The condition "any of `columns` is like any of the patterns bound from `$first` on".
fn like_any(columns: &[&str], patterns: usize, first: usize) -> String {
    let mut terms = Vec::new();
    for p in 0..patterns {
        for c in columns {
            terms.push(format!("{c} LIKE ${} ESCAPE '\\'", first + p));
        }
    }
    format!("({})", terms.join(" OR "))
}

/// One FTS5 phrase: the typed text, its quotes doubled. The trigram tokenizer folds case, Cyrillic included.
fn fts_phrase(search: &str) -> String {
    format!("\"{}\"", search.replace('"', "\"\""))
}

/// The ids of the mail a search finds, as a subquery, and whether it searched the case's number too: SQLite's
/// trigram full-text table (`messages_search`, kept by triggers and each batch's [`super::index_queued_mail`]; its
/// text holds the subject, sender, INN, demand number and the case's number) for three characters or more; otherwise
/// `LIKE` over the mail's own columns, which PostgreSQL answers from its trigram indexes.
fn mail_ids_matching(search: &str, sqlite: bool, values: &mut Vec<String>) -> (String, bool) {
    if sqlite && search.chars().count() >= 3 {
        values.push(fts_phrase(search));
        let ids = format!(
            "SELECT rowid FROM messages_search WHERE messages_search MATCH ${}",
            values.len()
        );
        return (ids, true);
    }
    let patterns = search_patterns(search);
    let own = like_any(
        &["subject", "from_addr", "client_inn", "demand_number"],
        patterns.len(),
        values.len() + 1,
    );
    values.extend(patterns);
    (format!("SELECT id FROM messages WHERE {own}"), false)
}

/// The mail log's search: the mail's own columns and its case's number.
fn search_condition(search: &str, sqlite: bool, values: &mut Vec<String>) -> String {
    let (mail, with_case) = mail_ids_matching(search, sqlite, values);
    if with_case {
        return format!("m.id IN ({mail})");
    }
    let patterns = search_patterns(search);
    let case = like_any(&["number"], patterns.len(), values.len() + 1);
    values.extend(patterns);
    format!(
        "m.id IN ({mail} UNION SELECT id FROM messages WHERE case_id IN (SELECT id FROM cases WHERE {case}))"
    )
}

/// The mail log's conditions: the filters, and a search over subject, sender, INN and demand number.
fn log_conditions(
    filter: &super::MailFilter,
    search: Option<&str>,
    sqlite: bool,
) -> (Vec<String>, Vec<String>) {
    let (clause, mut values) = super::audit_read::mail_conditions(filter, 0);
    let mut conditions: Vec<String> = clause
        .strip_prefix("WHERE ")
        .map(|c| vec![c.to_owned()])
        .unwrap_or_default();
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        conditions.push(search_condition(search, sqlite, &mut values));
    }
    (conditions, values)
}

const LOG_FROM: &str =
    "messages m LEFT JOIN clients c ON c.inn = m.client_inn LEFT JOIN cases k ON k.id = m.case_id";

/// A page of the stored mail, newest first, under the filters and the search.
pub async fn mail_page(
    conn: &mut AnyConnection,
    filter: &super::MailFilter,
    search: Option<&str>,
    page: LogPage,
    limit: i64,
) -> anyhow::Result<Vec<MailListRow>> {
    let (mut conditions, values) = log_conditions(filter, search, super::is_sqlite(conn));
    let (order, bound) = match page {
        LogPage::Newest => ("DESC", None),
        LogPage::Before(id) => {
            conditions.push(format!("m.id < ${}", values.len() + 1));
            ("DESC", Some(id))
        }
        LogPage::After(id) => {
            conditions.push(format!("m.id > ${}", values.len() + 1));
            ("ASC", Some(id))
        }
    };
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit_n = values.len() + usize::from(bound.is_some()) + 1;
    let sql = format!(
        "SELECT m.id, m.received_date, m.mailbox, m.from_addr, m.subject, m.status, m.category, m.kind, \
         m.client_inn, m.rule, m.error, c.name AS client_name, k.number AS demand_number, m.case_id \
         FROM {LOG_FROM} {clause} ORDER BY m.id {order} LIMIT ${limit_n}"
    );
    let mut query = sqlx::query_as(composed_sql(sql));
    for v in &values {
        query = query.bind(v.as_str());
    }
    if let Some(b) = bound {
        query = query.bind(b);
    }
    let mut rows: Vec<MailListRow> = query
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("read a page of the mail log")?;
    if order == "ASC" {
        rows.reverse();
    }
    Ok(rows)
}

/// How many mails the filters and the search select (the log's total).
pub async fn mail_count(
    conn: &mut AnyConnection,
    filter: &super::MailFilter,
    search: Option<&str>,
) -> anyhow::Result<i64> {
    let (conditions, values) = log_conditions(filter, search, super::is_sqlite(conn));
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!("SELECT COUNT(*) FROM messages m {clause}");
    let mut query = sqlx::query_scalar(composed_sql(sql));
    for v in &values {
        query = query.bind(v.as_str());
    }
    query
        .fetch_one(&mut *conn)
        .await
        .context("count the mail log")
}

/// Whether any mail has an id above `id` under the filters (a previous page exists).
pub async fn mail_newer_exists(
    conn: &mut AnyConnection,
    filter: &super::MailFilter,
    search: Option<&str>,
    id: i64,
) -> anyhow::Result<bool> {
    Ok(!mail_page(conn, filter, search, LogPage::After(id), 1)
        .await?
        .is_empty())
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
        LogPage::Newest,
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

/// A line of the task list: the task with its client, the demand's number and date, the mail's subject and the
/// client's production-calendar region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct TaskListRow {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub view: TaskView,
    pub demand_number: Option<String>,
    /// ISO date.
    pub demand_date: Option<String>,
    pub subject: Option<String>,
    /// ISO date the mail arrived.
    pub received_date: Option<String>,
    pub client_region: Option<String>,
    /// Who marked the task done, and when (RFC 3339).
    pub done_by: Option<String>,
    pub done_at: Option<String>,
}

const TASK_LIST_COLUMNS: &str = "k.number AS demand_number, k.demand_date AS demand_date, m.subject AS subject, \
    m.received_date AS received_date, c.region AS client_region, t.done_by AS done_by, t.done_at AS done_at";

fn task_list_from() -> String {
    format!("{TASK_VIEW_FROM} LEFT JOIN cases k ON k.id = t.case_id")
}

/// Whose tasks a list reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TaskOwners {
    /// Everyone's, and the unassigned ones.
    #[default]
    All,
    /// The tasks of `people`, and those of `absent` people whose client has `backup` as backup accountant (an
    /// absence without a substitute: the backup covers their own clients only).
    People {
        people: Vec<String>,
        absent: Vec<String>,
        backup: String,
    },
    /// The unassigned queue.
    Unassigned,
}

impl TaskOwners {
    /// One person's tasks.
    pub fn person(email: &str) -> Self {
        TaskOwners::People {
            people: vec![email.to_owned()],
            absent: Vec::new(),
            backup: String::new(),
        }
    }
}

/// What kind of work, as the list filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKindFilter {
    /// A tax-office demand (its case).
    Demand,
    /// A client's mail.
    Request,
    /// The tax calendar.
    Calendar,
}

/// The order of the task list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskOrder {
    /// By due date, then by id.
    #[default]
    Due,
    /// By the client's name (tasks without a client last), then by due date.
    Client,
}

/// The filters of the task list, all applied in SQL (the list pages in SQL, so a firm's whole history costs a
/// page, not a read of every task).
#[derive(Debug, Clone, Default)]
pub struct TaskListFilter {
    pub owners: TaskOwners,
    /// `open`, `done`, or `None` for both.
    pub status: Option<String>,
    /// `Some(None)`: tasks without a client.
    pub client: Option<Option<String>>,
    pub kind: Option<TaskKindFilter>,
    /// Over the title, the client's name and INN, the mail's subject and the demand number.
    pub search: Option<String>,
    /// One assignee's tasks (a manager's view of a person), within the owners.
    pub person: Option<String>,
}

/// The `WHERE` clause of a task list, its bound values, and the tables it needs: `None` when the owners are
/// nobody (nothing to read).
struct TaskListSql {
    clause: String,
    values: Vec<String>,
    /// The tables the clause reads: the task alone, or its client too (`c`).
    joins: TaskJoins,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskJoins {
    None,
    Client,
}

impl TaskJoins {
    fn from(self) -> &'static str {
        match self {
            TaskJoins::None => "tasks t",
            TaskJoins::Client => "tasks t LEFT JOIN clients c ON c.inn = t.client_inn",
        }
    }
}

/// Binds `people` as values and returns their placeholders, `$3, $4`.
fn marks(values: &mut Vec<String>, people: &[String]) -> String {
    let mut marks = Vec::new();
    for p in people {
        values.push(p.clone());
        marks.push(format!("${}", values.len()));
    }
    marks.join(", ")
}

/// A task list's search: the task's title and client INN, its client's name, its case's number and its mail (subject,
/// sender, INN and demand number), each through an uncorrelated `IN` the engine answers once from
/// its index (FTS5 on SQLite, trigram GIN on PostgreSQL), never a join of every task with every mail.
fn task_search_condition(search: &str, sqlite: bool, values: &mut Vec<String>) -> String {
    let patterns = search_patterns(search);
    let first = values.len() + 1;
    let own = like_any(&["t.title", "t.client_inn"], patterns.len(), first);
    let client = like_any(&["name"], patterns.len(), first);
    let case = like_any(&["number"], patterns.len(), first);
    values.extend(patterns);
    // The case's number is searched above whether or not the mail's search covers it.
    let (mail, _) = mail_ids_matching(search, sqlite, values);
    format!(
        "({own} OR t.client_inn IN (SELECT inn FROM clients WHERE {client}) \
         OR t.case_id IN (SELECT id FROM cases WHERE {case}) OR t.message IN ({mail}))"
    )
}

fn task_list_sql(filter: &TaskListFilter, sqlite: bool) -> Option<TaskListSql> {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let mut joins = TaskJoins::None;
    match &filter.owners {
        TaskOwners::All => {}
        TaskOwners::Unassigned => conditions.push("t.assignee IS NULL".into()),
        TaskOwners::People {
            people,
            absent,
            backup,
        } => {
            if people.is_empty() && absent.is_empty() {
                return None;
            }
            let mut either = Vec::new();
            if !people.is_empty() {
                either.push(format!("t.assignee IN ({})", marks(&mut values, people)));
            }
            if !absent.is_empty() {
                let absent = marks(&mut values, absent);
                values.push(backup.clone());
                either.push(format!(
                    "(t.assignee IN ({absent}) AND c.backup_accountant = ${})",
                    values.len()
                ));
                joins = TaskJoins::Client;
            }
            conditions.push(format!("({})", either.join(" OR ")));
        }
    }
    if let Some(person) = &filter.person {
        values.push(person.clone());
        conditions.push(format!("t.assignee = ${}", values.len()));
    }
    if let Some(status) = &filter.status {
        values.push(status.clone());
        conditions.push(format!("t.status = ${}", values.len()));
    }
    match &filter.client {
        None => {}
        Some(None) => conditions.push("t.client_inn IS NULL".into()),
        Some(Some(inn)) => {
            values.push(inn.clone());
            conditions.push(format!("t.client_inn = ${}", values.len()));
        }
    }
    match filter.kind {
        None => {}
        Some(TaskKindFilter::Calendar) => conditions.push("t.event IS NOT NULL".into()),
        Some(TaskKindFilter::Demand) => {
            conditions.push("t.event IS NULL AND t.case_id IS NOT NULL".into())
        }
        Some(TaskKindFilter::Request) => {
            conditions.push("t.event IS NULL AND t.case_id IS NULL".into())
        }
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        conditions.push(task_search_condition(search, sqlite, &mut values));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    Some(TaskListSql {
        clause,
        values,
        joins,
    })
}

/// A page of the tasks a list shows: `limit` of them after `offset`, in `order`. The page's ids are chosen over the
/// tasks alone (and their clients, for the order by name); only those ids are joined with their mail and case.
pub async fn web_task_list(
    conn: &mut AnyConnection,
    filter: &TaskListFilter,
    order: TaskOrder,
    offset: i64,
    limit: i64,
) -> anyhow::Result<Vec<TaskListRow>> {
    let Some(sql) = task_list_sql(filter, super::is_sqlite(conn)) else {
        return Ok(Vec::new());
    };
    let (order_by, joins) = match order {
        TaskOrder::Due => ("t.due, t.id", sql.joins),
        TaskOrder::Client => (
            "CASE WHEN c.name IS NULL AND t.client_inn IS NULL THEN 1 ELSE 0 END, \
             COALESCE(c.name, t.client_inn), t.due, t.id",
            TaskJoins::Client,
        ),
    };
    let n = sql.values.len();
    let text = format!(
        "SELECT {TASK_VIEW_COLUMNS}, {TASK_LIST_COLUMNS} FROM {} WHERE t.id IN \
         (SELECT t.id FROM {} {} ORDER BY {order_by} LIMIT ${} OFFSET ${}) ORDER BY {order_by}",
        task_list_from(),
        joins.from(),
        sql.clause,
        n + 1,
        n + 2
    );
    let mut query = sqlx::query_as(composed_sql(text));
    for v in &sql.values {
        query = query.bind(v.as_str());
    }
    query
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await
        .context("read the task list")
}

/// How many tasks the filter selects per client (`None`: without a client), by INN; their sum is the list's total.
pub async fn web_task_clients(
    conn: &mut AnyConnection,
    filter: &TaskListFilter,
) -> anyhow::Result<Vec<(Option<String>, i64)>> {
    let Some(sql) = task_list_sql(filter, super::is_sqlite(conn)) else {
        return Ok(Vec::new());
    };
    let text = format!(
        "SELECT t.client_inn, COUNT(*) FROM {} {} GROUP BY t.client_inn",
        sql.joins.from(),
        sql.clause
    );
    let mut query = sqlx::query_as(composed_sql(text));
    for v in &sql.values {
        query = query.bind(v.as_str());
    }
    let mut rows: Vec<(Option<String>, i64)> = query
        .fetch_all(&mut *conn)
        .await
        .context("count the task list by client")?;
    rows.sort();
    Ok(rows)
}

/// Open tasks and overdue ones (due before `today`, ISO) per assignee among the owners: a manager's view of the
/// team's load.
pub async fn web_team_load(
    conn: &mut AnyConnection,
    owners: &TaskOwners,
    today: &str,
) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let filter = TaskListFilter {
        owners: owners.clone(),
        status: Some("open".to_owned()),
        ..Default::default()
    };
    let Some(sql) = task_list_sql(&filter, super::is_sqlite(conn)) else {
        return Ok(Vec::new());
    };
    let clause = if sql.clause.is_empty() {
        "WHERE t.assignee IS NOT NULL".to_owned()
    } else {
        format!("{} AND t.assignee IS NOT NULL", sql.clause)
    };
    let text = format!(
        "SELECT t.assignee, COUNT(*), COUNT(CASE WHEN t.due < ${} THEN 1 END) FROM {} {clause} \
         GROUP BY t.assignee ORDER BY t.assignee",
        sql.values.len() + 1,
        sql.joins.from(),
    );
    let mut query = sqlx::query_as(composed_sql(text));
    for v in &sql.values {
        query = query.bind(v.as_str());
    }
    query
        .bind(today)
        .fetch_all(&mut *conn)
        .await
        .context("count the team's open tasks")
}

/// One task as its page shows it.
pub async fn web_task_row(
    conn: &mut AnyConnection,
    id: i64,
) -> anyhow::Result<Option<TaskListRow>> {
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS}, {TASK_LIST_COLUMNS} FROM {} WHERE t.id = $1",
        task_list_from()
    );
    sqlx::query_as(composed_sql(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("read a task")
}

/// The other tasks of a case (one demand), by due date.
pub async fn case_tasks(conn: &mut AnyConnection, case: i64) -> anyhow::Result<Vec<TaskListRow>> {
    let sql = format!(
        "SELECT {TASK_VIEW_COLUMNS}, {TASK_LIST_COLUMNS} FROM {} WHERE t.case_id = $1 ORDER BY t.due, t.id",
        task_list_from()
    );
    sqlx::query_as(composed_sql(sql))
        .bind(case)
        .fetch_all(&mut *conn)
        .await
        .context("read a case's tasks")
}

/// The mails of a case (the demand and what joined it), oldest first.
pub async fn case_mails(conn: &mut AnyConnection, case: i64) -> anyhow::Result<Vec<MailListRow>> {
    sqlx::query_as(composed_sql(format!(
        "SELECT m.id, m.received_date, m.mailbox, m.from_addr, m.subject, m.status, m.category, m.kind, \
         m.client_inn, m.rule, m.error, c.name AS client_name, k.number AS demand_number, m.case_id \
         FROM {LOG_FROM} WHERE m.case_id = $1 ORDER BY m.id"
    )))
    .bind(case)
    .fetch_all(&mut *conn)
    .await
    .context("read a case's mails")
}

/// Marks an open task done by `by` at `at`; `false` when it was not open.
pub async fn mark_task_done_by(
    conn: &mut AnyConnection,
    id: i64,
    by: &str,
    at: &str,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE tasks SET status = 'done', done_by = $1, done_at = $2 WHERE id = $3 AND status = 'open'",
    )
    .bind(by)
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("mark a task done")?;
    Ok(done.rows_affected() == 1)
}

/// Opens a done task again (the undo of done); `false` when it was not done.
pub async fn reopen_task(conn: &mut AnyConnection, id: i64) -> anyhow::Result<bool> {
    let reopened = sqlx::query(
        "UPDATE tasks SET status = 'open', done_by = NULL, done_at = NULL WHERE id = $1 AND status = 'done'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("reopen a task")?;
    Ok(reopened.rows_affected() == 1)
}

/// A line reads as its task (`row.title`), with the joined columns beside it.
impl std::ops::Deref for TaskListRow {
    type Target = TaskView;

    fn deref(&self) -> &TaskView {
        &self.view
    }
}

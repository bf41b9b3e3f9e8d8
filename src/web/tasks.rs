//! The accountant's pages: my tasks (overdue, today, this week, later, by client), one task with its deadline's
//! provenance and its original mail, attachments, done / reassign, and the personal ICS feed.

use super::auth::{visibility, CsrfForm, Visibility};
use super::{content_disposition, Web, WebError};
use crate::calendar::obligations::{ics, open_tasks};
use crate::directory::Directory;
use crate::store::{self, TaskView};
use anyhow::Context as _;
use axum::extract::{Form, Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{Datelike as _, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Viewer;

/// How many open tasks a firm-wide list shows at most (auditors and admins).
const FIRM_TASKS_LIMIT: i64 = 500;

/// Which part of the list a task belongs in.
fn section(due: &str, today: NaiveDate) -> &'static str {
    let Ok(due) = NaiveDate::parse_from_str(due, "%Y-%m-%d") else {
        return "later";
    };
    let days_to_sunday = 6 - i64::from(today.weekday().num_days_from_monday());
    if due < today {
        "overdue"
    } else if due == today {
        "today"
    } else if due <= today + chrono::Duration::days(days_to_sunday) {
        "week"
    } else {
        "later"
    }
}

#[derive(Debug, Serialize)]
struct Section {
    key: &'static str,
    title: &'static str,
    tasks: Vec<TaskView>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    client: Option<String>,
}

/// The open tasks a viewer sees.
pub async fn visible_open_tasks(
    web: &Web,
    viewer: &Viewer,
) -> Result<(Vec<TaskView>, Directory, Visibility), WebError> {
    let mut conn = web.store().acquire().await?;
    let directory = store::load_directory(&mut conn).await?;
    let vis = visibility(viewer, &directory, web.today());
    let tasks = if viewer.sees_all {
        store::web_open_tasks(&mut conn, FIRM_TASKS_LIMIT).await?
    } else {
        store::web_tasks_of(&mut conn, &vis.people(), true)
            .await?
            .into_iter()
            .filter(|t| {
                vis.sees(
                    viewer,
                    &directory,
                    t.assignee.as_deref(),
                    t.client_inn.as_deref(),
                )
            })
            .collect()
    };
    Ok((tasks, directory, vis))
}

pub async fn list(
    State(web): State<Web>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    let (tasks, _directory, _vis) = visible_open_tasks(&web, &viewer).await?;
    let today = web.today();
    let mut by_client: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for t in &tasks {
        let key = t.client_inn.clone().unwrap_or_default();
        let entry = by_client
            .entry(key)
            .or_insert_with(|| (t.client_name.clone().unwrap_or_default(), 0));
        entry.1 += 1;
    }
    let client = q.client.filter(|c| !c.is_empty());
    let mut sections: Vec<Section> = [
        ("overdue", "Просроченные"),
        ("today", "Срок сегодня"),
        ("week", "На этой неделе"),
        ("later", "Позже"),
    ]
    .into_iter()
    .map(|(key, title)| Section {
        key,
        title,
        tasks: Vec::new(),
    })
    .collect();
    let total = tasks.len();
    for t in tasks {
        if let Some(c) = &client {
            if t.client_inn.as_deref() != Some(c.as_str()) {
                continue;
            }
        }
        let key = section(&t.due, today);
        if let Some(s) = sections.iter_mut().find(|s| s.key == key) {
            s.tasks.push(t);
        }
    }
    let clients: Vec<_> = by_client
        .into_iter()
        .map(|(inn, (name, n))| minijinja::context! { inn => inn, name => name, count => n })
        .collect();
    let mut conn = web.store().acquire().await?;
    let ics_created = store::feed_token_created(&mut conn, &viewer.email).await?;
    web.render(
        "tasks.html",
        Some(&viewer),
        minijinja::context! {
            sections => sections, clients => clients, total => total, client => client,
            today => today.to_string(), ics_created => ics_created,
        },
    )
}

/// A task the viewer may see, or 404: the same answer whether there is no such task or it is not theirs, so ids
/// tell nothing about what exists.
async fn visible_task(
    web: &Web,
    viewer: &Viewer,
    id: i64,
) -> Result<(TaskView, Directory), WebError> {
    let mut conn = web.store().acquire().await?;
    let task = store::web_task_by_id(&mut conn, id)
        .await?
        .ok_or(WebError::NotFound)?;
    let directory = store::load_directory(&mut conn).await?;
    let vis = visibility(viewer, &directory, web.today());
    if !vis.sees(
        viewer,
        &directory,
        task.assignee.as_deref(),
        task.client_inn.as_deref(),
    ) {
        tracing::warn!(account = %viewer.email, task_id = id, "task refused to a viewer who may not see it");
        return Err(WebError::NotFound);
    }
    Ok((task, directory))
}

/// One mail as a person reads it.
#[derive(Debug, Serialize, Default)]
pub struct MailView {
    pub id: i64,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub date: String,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub attachments: Vec<AttachmentView>,
    /// Whether the raw mail is still kept (it may be purged after the retention period).
    pub kept: bool,
}

#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub n: usize,
    pub name: String,
    pub mime: String,
    pub size: usize,
}

/// Attachments with their bytes, in the order mail-parser lists them (the index is the download URL's).
fn attachments(raw: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    message
        .attachments()
        .map(|part| {
            use mail_parser::MimeHeaders as _;
            let name = part.attachment_name().unwrap_or("").to_owned();
            let mime = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned())
                .to_lowercase();
            (name, mime, part.contents().to_vec())
        })
        .collect()
}

/// The headers a person reads first, in this order.
const SHOWN_HEADERS: [&str; 6] = ["from", "to", "cc", "date", "subject", "message-id"];

pub async fn mail_view(web: &Web, message: i64) -> Result<Option<MailView>, WebError> {
    let mut conn = web.store().acquire().await?;
    let Some(m) = store::mail(&mut conn, message).await? else {
        return Ok(None);
    };
    let raw = if m.raw_kept {
        store::raw_mail(&mut conn, &m.sha256).await?
    } else {
        None
    };
    let mut view = MailView {
        id: m.id,
        subject: m.subject.clone(),
        from: m.from_addr.clone(),
        date: m.received_date.clone(),
        message_id: m.message_id.clone().unwrap_or_default(),
        kept: raw.is_some(),
        ..Default::default()
    };
    if let Some(raw) = raw {
        if let Ok(parsed) = crate::mail::parse(&raw) {
            view.to = parsed.to.join(", ");
            view.text = parsed.text;
            view.headers = SHOWN_HEADERS
                .iter()
                .filter_map(|h| {
                    parsed
                        .headers
                        .get(*h)
                        .map(|v| (label(h, HEADER_LABELS), v.clone()))
                })
                .collect();
        }
        view.attachments = attachments(&raw)
            .into_iter()
            .enumerate()
            .map(|(n, (name, mime, bytes))| AttachmentView {
                n,
                name: if name.is_empty() {
                    format!("вложение {}", n + 1)
                } else {
                    name
                },
                mime,
                size: bytes.len(),
            })
            .collect();
    }
    Ok(Some(view))
}

/// Russian labels for the provenance keys the pipeline and the tax calendar write; other keys show as written.
const PROVENANCE_LABELS: &[(&str, &str)] = &[
    ("base", "исходная дата"),
    ("from", "отсчёт от"),
    ("working_days", "рабочих дней"),
    ("calendar", "производственный календарь"),
    ("region", "регион"),
    ("law", "основание"),
    ("rule", "правило"),
    ("event", "событие календаря"),
    ("period", "период"),
    ("due_rule", "правило срока"),
];

/// Russian labels for the headers shown above a mail.
const HEADER_LABELS: &[(&str, &str)] = &[
    ("from", "От"),
    ("to", "Кому"),
    ("cc", "Копия"),
    ("date", "Дата"),
    ("subject", "Тема"),
    ("message-id", "Message-ID"),
];

fn label(key: &str, labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, l)| (*l).to_owned())
        .unwrap_or_else(|| key.to_owned())
}

/// Provenance as label/value lines (it is a JSON object written by the pipeline or the tax calendar).
fn provenance_lines(provenance: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(provenance) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (label(&k, PROVENANCE_LABELS), v)
            })
            .collect(),
        _ => vec![("provenance".into(), provenance.to_owned())],
    }
}

pub async fn show(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let (task, directory) = visible_task(&web, &viewer, id).await?;
    let mail = match task.message {
        Some(m) => mail_view(&web, m).await?,
        None => None,
    };
    // The demand's checklist belongs with the task that answers it.
    let checklist = match task.case_id {
        Some(case) if task.step == "answer" => {
            let mut conn = web.store().acquire().await?;
            store::case_checklist(&mut conn, case).await?
        }
        _ => Vec::new(),
    };
    let colleagues: Vec<_> = directory
        .accountants()
        .filter(|a| Some(a.email.as_str()) != task.assignee.as_deref())
        .map(|a| minijinja::context! { email => a.email.clone(), name => a.name.clone() })
        .collect();
    web.render(
        "task.html",
        Some(&viewer),
        minijinja::context! {
            task => task.clone(), provenance => provenance_lines(&task.provenance), mail => mail,
            colleagues => colleagues, may_write => viewer.may_write() && task.status == store::TaskStatus::Open,
            checklist => checklist, may_tick => viewer.may_write(),
        },
    )
}

/// Writes a task event to the hash-chained log inside the open transaction, and queues `sink_event` (`done`,
/// `reassigned`) for the firm's task sinks in the same transaction, keyed by the log entry.
async fn log_task_event(
    conn: &mut sqlx::AnyConnection,
    event: &str,
    sink_event: &str,
    task: &TaskView,
    payload: serde_json::Value,
) -> anyhow::Result<()> {
    let at = store::timestamp(Utc::now());
    let seq = store::append_log(
        conn,
        &store::LogEntry {
            at: &at,
            event,
            message: task.message,
            sha256: None,
            payload: &payload,
        },
    )
    .await?;
    store::queue_task_change(conn, task.id, sink_event, seq, &at).await?;
    Ok(())
}

pub async fn done(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    if !viewer.may_write() {
        return Err(WebError::Forbidden);
    }
    let (task, _) = visible_task(&web, &viewer, id).await?;
    let mut tx = web.store().begin().await?;
    if !store::mark_task_done(&mut tx, id).await? {
        return Err(WebError::BadRequest("Задача уже закрыта.".into()));
    }
    log_task_event(
        &mut tx,
        "task_done",
        store::EVENT_DONE,
        &task,
        serde_json::json!({"task": id, "step": task.step, "assignee": task.assignee, "by": viewer.email}),
    )
    .await?;
    tx.commit().await.context("mark a task done")?;
    tracing::info!(task_id = id, account = %viewer.email, "task done");
    Ok(Redirect::to(&format!("/tasks/{id}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TickForm {
    #[serde(default)]
    csrf: String,
    /// `1` ticks the item, anything else unticks it.
    #[serde(default)]
    done: String,
}

/// Ticks or unticks item `position` of the checklist of the demand task `id` answers; logged like every change.
pub async fn tick(
    State(web): State<Web>,
    viewer: Viewer,
    Path((id, position)): Path<(i64, i64)>,
    Form(form): Form<TickForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    if !viewer.may_write() {
        return Err(WebError::Forbidden);
    }
    let (task, _) = visible_task(&web, &viewer, id).await?;
    let Some(case) = task.case_id.filter(|_| task.step == "answer") else {
        return Err(WebError::BadRequest(
            "У задачи нет перечня документов.".into(),
        ));
    };
    let done = form.done == "1";
    let at = store::timestamp(Utc::now());
    let mut tx = web.store().begin().await?;
    if store::tick_checklist_item(&mut tx, case, position, done, &viewer.email, &at).await? {
        store::append_log(
            &mut tx,
            &store::LogEntry {
                at: &at,
                event: if done { "checklist_ticked" } else { "checklist_unticked" },
                message: task.message,
                sha256: None,
                payload: &serde_json::json!({"task": id, "case": case, "position": position, "by": viewer.email}),
            },
        )
        .await?;
    }
    tx.commit().await.context("tick a checklist item")?;
    Ok(Redirect::to(&format!("/tasks/{id}#checklist")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReassignForm {
    #[serde(default)]
    csrf: String,
    to: String,
}

pub async fn reassign(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<ReassignForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    if !viewer.may_write() {
        return Err(WebError::Forbidden);
    }
    let (task, directory) = visible_task(&web, &viewer, id).await?;
    let to = form.to.trim().to_lowercase();
    if directory.accountant(&to).is_none() {
        return Err(WebError::BadRequest(format!(
            "{to} нет в списке сотрудников: выберите коллегу из списка."
        )));
    }
    let mut tx = web.store().begin().await?;
    if !store::reassign_task(&mut tx, id, &to).await? {
        return Err(WebError::BadRequest("Задача уже закрыта.".into()));
    }
    log_task_event(
        &mut tx,
        "task_reassigned",
        store::EVENT_REASSIGNED,
        &task,
        serde_json::json!({"task": id, "step": task.step, "from": task.assignee, "to": to, "by": viewer.email}),
    )
    .await?;
    tx.commit().await.context("reassign a task")?;
    tracing::info!(task_id = id, account = %viewer.email, to = %to, "task reassigned");
    Ok(Redirect::to(&format!("/tasks/{id}")).into_response())
}

/// An attachment of a mail: auditors and admins for any mail, others for a mail one of whose tasks they see.
pub async fn attachment(
    State(web): State<Web>,
    viewer: Viewer,
    Path((id, n)): Path<(i64, usize)>,
) -> Result<Response, WebError> {
    let mut conn = web.store().acquire().await?;
    if !viewer.sees_all {
        let directory = store::load_directory(&mut conn).await?;
        let vis = visibility(&viewer, &directory, web.today());
        let tasks = store::tasks_of_message(&mut conn, id).await?;
        if !tasks.iter().any(|t| {
            vis.sees(
                &viewer,
                &directory,
                t.assignee.as_deref(),
                t.client_inn.as_deref(),
            )
        }) {
            // As for a mail that does not exist: the answer tells nothing about other people's mail.
            return Err(WebError::NotFound);
        }
    }
    let m = store::mail(&mut conn, id)
        .await?
        .ok_or(WebError::NotFound)?;
    let raw = store::raw_mail(&mut conn, &m.sha256)
        .await?
        .ok_or(WebError::NotFound)?;
    let (name, _mime, bytes) = attachments(&raw)
        .into_iter()
        .nth(n)
        .ok_or(WebError::NotFound)?;
    Ok((
        [
            // Never rendered by the browser: mail attachments come from strangers.
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, content_disposition(&name)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

/// `/ics/<token>.ics`: the open tasks of the token's owner, as the `calendar --format ics` writer writes them. The
/// token is found by its SHA-256, and only while its owner is someone the firm knows (a deactivated person's
/// feed answers 404 like a token that never was).
pub async fn ics_feed(
    State(web): State<Web>,
    Path(file): Path<String>,
) -> Result<Response, WebError> {
    let token = file.strip_suffix(".ics").ok_or(WebError::NotFound)?;
    let mut conn = web.store().acquire().await?;
    let person = store::email_of_feed_token(&mut conn, &store::sha256_hex(token.as_bytes()))
        .await?
        .ok_or(WebError::NotFound)?;
    let directory = store::load_directory(&mut conn).await?;
    if super::auth::role_of(&web.settings().web, &directory, &person).is_none() {
        return Err(WebError::NotFound);
    }
    let feed = open_tasks(&mut conn, &person).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        ics(&[], &feed, Utc::now()),
    )
        .into_response())
}

/// Gives the viewer a new feed token (the old link stops working) and shows it, this once.
pub async fn new_ics_token(
    State(web): State<Web>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    let token = super::auth::new_feed_token();
    let mut conn = web.store().acquire().await?;
    store::set_feed_token(
        &mut conn,
        &viewer.email,
        &store::sha256_hex(token.as_bytes()),
        &store::timestamp(Utc::now()),
    )
    .await?;
    drop(conn);
    let page = web.render(
        "feed.html",
        Some(&viewer),
        minijinja::context! { token => token },
    )?;
    Ok(([(header::CACHE_CONTROL, "no-store")], page).into_response())
}

/// Revokes the viewer's feed token.
pub async fn revoke_ics_token(
    State(web): State<Web>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    let mut conn = web.store().acquire().await?;
    store::revoke_feed_token(&mut conn, &viewer.email).await?;
    Ok(Redirect::to("/tasks").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_fall_into_overdue_today_week_and_later() {
        // 2026-03-11 is a Wednesday: the week runs to Sunday the 15th.
        let today = NaiveDate::from_ymd_opt(2026, 3, 11).expect("date");
        assert_eq!(section("2026-03-10", today), "overdue");
        assert_eq!(section("2026-03-11", today), "today");
        assert_eq!(section("2026-03-15", today), "week");
        assert_eq!(section("2026-03-16", today), "later");
    }
}

//! The accountant's pages: my tasks (overdue, today, this week, later, by client), one task with its deadline's
//! provenance and its original mail, attachments, done / reassign, and the personal ICS feed.

use super::auth::{visibility, CsrfForm, Visibility};
use super::present;
use super::{content_disposition, Web, WebError};
use crate::directory::Directory;
use crate::store::{self, TaskView};
use anyhow::Context as _;
use axum::extract::{Form, Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Viewer;

/// Tasks per page of the list.
pub const LIST_PAGE_SIZE: usize = 50;

/// One line of the list, ready to show.
#[derive(Debug, Serialize)]
struct ListItem {
    #[serde(flatten)]
    row: store::TaskListRow,
    /// `дд.мм.гггг`.
    due_ru: String,
    /// «просрочено на 12 дн.», «сегодня», «через 2 раб. дня».
    relative: String,
    section: &'static str,
    kind: &'static str,
    kind_label: String,
    step_label: String,
    priority_label: Option<String>,
    /// The assignee's name, when it is not the viewer (the list never repeats the signed-in person).
    assignee_name: Option<String>,
    demand_date_ru: Option<String>,
}

#[derive(Debug, Serialize)]
struct Section {
    key: &'static str,
    title: &'static str,
    tasks: Vec<ListItem>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ListQuery {
    /// A client's INN, or `none` for tasks without a client.
    #[serde(default)]
    client: String,
    /// `demand`, `request` or `calendar`.
    #[serde(default)]
    kind: String,
    /// `open` (the default), `done` or `all`.
    #[serde(default)]
    status: String,
    /// Searched in the client's name and INN, the title, the mail's subject and the demand number.
    #[serde(default)]
    q: String,
    /// `due` (the default) or `client`.
    #[serde(default)]
    sort: String,
    /// From 1.
    page: Option<usize>,
    /// A manager's view of one person's tasks.
    #[serde(default)]
    person: String,
    /// `unassigned`: the managers' queue.
    #[serde(default)]
    queue: String,
    /// After a reassign: the task given, and to whom.
    passed: Option<i64>,
    #[serde(default)]
    to: String,
}

impl ListQuery {
    /// The filters as a query string (without the page), for paging links.
    fn query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("client", &self.client),
            ("kind", &self.kind),
            ("status", &self.status),
            ("q", &self.q),
            ("sort", &self.sort),
            ("person", &self.person),
            ("queue", &self.queue),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        q.finish()
    }

    fn kind_filter(&self) -> Result<Option<store::TaskKindFilter>, WebError> {
        Ok(match self.kind.as_str() {
            "" => None,
            "demand" => Some(store::TaskKindFilter::Demand),
            "request" => Some(store::TaskKindFilter::Request),
            "calendar" => Some(store::TaskKindFilter::Calendar),
            other => {
                return Err(WebError::BadRequest(format!(
                    "Вид задачи «{other}» неизвестен: требование, запрос клиента или календарь."
                )))
            }
        })
    }

    fn status_filter(&self) -> Result<Option<String>, WebError> {
        Ok(match self.status.as_str() {
            "" | "open" => Some("open".to_owned()),
            "done" => Some("done".to_owned()),
            "all" => None,
            other => {
                return Err(WebError::BadRequest(format!(
                    "Состояние «{other}» неизвестно: открытые, выполненные или все."
                )))
            }
        })
    }
}

/// Whose tasks the viewer's list reads: the unassigned queue (managers only), everyone's, or the people the viewer
/// sees (with an absent colleague's tasks only for the clients the viewer backs up).
fn owners_of(
    viewer: &Viewer,
    vis: &Visibility,
    unassigned: bool,
) -> Result<store::TaskOwners, WebError> {
    Ok(if unassigned {
        if !(viewer.sees_all || viewer.is_manager) {
            return Err(WebError::Forbidden);
        }
        store::TaskOwners::Unassigned
    } else if viewer.sees_all {
        store::TaskOwners::All
    } else {
        store::TaskOwners::People {
            people: vis.full.iter().cloned().collect(),
            absent: vis.via_backup.difference(&vis.full).cloned().collect(),
            backup: viewer.email.clone(),
        }
    })
}

fn list_item(
    row: store::TaskListRow,
    today: NaiveDate,
    cal: &crate::calendar::ProductionCalendar,
    directory: &Directory,
    viewer: &Viewer,
) -> ListItem {
    let due = NaiveDate::parse_from_str(&row.view.due, "%Y-%m-%d").unwrap_or(today);
    let kind = present::task_kind(row.view.event.as_deref(), row.view.case_id);
    let relative = if row.view.status == store::TaskStatus::Open {
        present::relative_due(due, today, cal, row.client_region.as_deref())
    } else {
        "выполнена".to_owned()
    };
    let assignee_name = match row.view.assignee.as_deref() {
        Some(a) if a == viewer.email => None,
        Some(a) => Some(
            directory
                .accountant(a)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| a.to_owned()),
        ),
        None => Some("без исполнителя".to_owned()),
    };
    ListItem {
        due_ru: present::ru_date(&row.view.due),
        relative,
        section: present::section(due, today),
        kind,
        kind_label: present::word(kind, present::TASK_KINDS),
        step_label: present::word(&row.view.step, present::STEPS),
        priority_label: (row.view.priority != "normal")
            .then(|| present::word(&row.view.priority, present::PRIORITIES)),
        assignee_name,
        demand_date_ru: row.demand_date.as_deref().map(present::ru_date),
        row,
    }
}

pub async fn list(
    State(web): State<Web>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    let unassigned = q.queue == "unassigned";
    let client = match q.client.trim() {
        "" => None,
        "none" => Some(None),
        inn => Some(Some(inn.to_owned())),
    };
    let mut conn = web.store().acquire().await?;
    let directory = store::load_directory(&mut conn).await?;
    let today = web.today();
    let vis = visibility(&viewer, &directory, today);
    let owners = owners_of(&viewer, &vis, unassigned)?;
    let person = q.person.trim().to_lowercase();
    let filter = store::TaskListFilter {
        owners: owners.clone(),
        status: q.status_filter()?,
        client,
        kind: q.kind_filter()?,
        search: Some(q.q.clone()).filter(|s| !s.trim().is_empty()),
        person: Some(person).filter(|p| !p.is_empty()),
    };
    let cal = web.pipeline().ctx().calendar;
    let name_of = |email: &str| {
        directory
            .accountant(email)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| email.to_owned())
    };
    // The team: people the viewer sees beside themselves, with their open and overdue counts (a manager's view).
    let mut people: BTreeMap<String, (String, i64, i64)> = BTreeMap::new();
    if !unassigned && (viewer.is_manager || viewer.sees_all) {
        for p in vis.people() {
            if p != viewer.email {
                people.entry(p.clone()).or_insert((name_of(&p), 0, 0));
            }
        }
        for (a, open, overdue) in
            store::web_team_load(&mut conn, &owners, &today.to_string()).await?
        {
            if viewer.sees_all || people.contains_key(&a) {
                let entry = people.entry(a.clone()).or_insert((name_of(&a), 0, 0));
                entry.1 = open;
                entry.2 = overdue;
            }
        }
    }
    let by_client = store::web_task_clients(&mut conn, &filter).await?;
    let total = usize::try_from(by_client.iter().map(|(_, n)| n).sum::<i64>()).unwrap_or(0);
    let by_client_sort = q.sort == "client";
    let pages = total.div_ceil(LIST_PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let order = if by_client_sort {
        store::TaskOrder::Client
    } else {
        store::TaskOrder::Due
    };
    let offset = i64::try_from((page - 1) * LIST_PAGE_SIZE).unwrap_or(i64::MAX);
    let page_size = i64::try_from(LIST_PAGE_SIZE).unwrap_or(50);
    let items: Vec<ListItem> = store::web_task_list(&mut conn, &filter, order, offset, page_size)
        .await?
        .into_iter()
        .map(|r| list_item(r, today, &cal, &directory, &viewer))
        .collect();
    // Sections by deadline are for open work; done tasks, or open and done together, are one list by due date.
    let sections: Vec<Section> = if by_client_sort || filter.status.as_deref() != Some("open") {
        vec![Section {
            key: "all",
            title: if by_client_sort {
                "По клиентам"
            } else {
                "Задачи"
            },
            tasks: items,
        }]
    } else {
        let mut sections: Vec<Section> = [
            ("overdue", "Просроченные"),
            ("today", "Срок сегодня"),
            ("week", "Ближайшие 7 дней"),
            ("later", "Позже"),
        ]
        .into_iter()
        .map(|(key, title)| Section {
            key,
            title,
            tasks: Vec::new(),
        })
        .collect();
        for item in items {
            let key = if item.row.view.status == store::TaskStatus::Open {
                item.section
            } else {
                "later"
            };
            if let Some(s) = sections.iter_mut().find(|s| s.key == key) {
                s.tasks.push(item);
            }
        }
        sections
    };
    let clients: Vec<_> = by_client
        .into_iter()
        .map(|(inn, n)| {
            let name = inn
                .as_deref()
                .and_then(|inn| directory.client(inn))
                .map(|c| c.name.clone());
            minijinja::context! { inn => inn.unwrap_or_default(), name => name, count => n }
        })
        .collect();
    let team: Vec<_> = people
        .into_iter()
        .map(|(email, (name, open, overdue))| {
            minijinja::context! { email => email, name => name, open => open, overdue => overdue }
        })
        .collect();
    // Whom the queue's tasks may be given to: the viewer's team, or everyone for an admin.
    let assignable: Vec<_> = directory
        .accountants()
        .filter(|a| viewer.is_admin || viewer.team.contains(&a.email) || a.email == viewer.email)
        .map(|a| minijinja::context! { email => a.email.clone(), name => a.name.clone() })
        .collect();
    let passed = q.passed.map(|id| {
        let to = q.to.trim().to_lowercase();
        let name = directory
            .accountant(&to)
            .map(|a| a.name.clone())
            .unwrap_or(to);
        minijinja::context! { id => id, name => name }
    });
    let ics_created = store::feed_token_created(&mut conn, &viewer.email).await?;
    let qs = q.query_string();
    let client_name = match q.client.trim() {
        "" => None,
        "none" => Some("без клиента".to_owned()),
        inn => Some(
            directory
                .client(inn)
                .map(|c| format!("{} ({inn})", c.name))
                .unwrap_or_else(|| inn.to_owned()),
        ),
    };
    web.render(
        "tasks.html",
        Some(&viewer),
        minijinja::context! {
            sections => sections, clients => clients, total => total, q => q, qs => qs,
            client_name => client_name, team => team, assignable => assignable,
            page => page, pages => pages, unassigned => unassigned, passed => passed,
            multi_person => viewer.sees_all || viewer.is_manager || vis.people().len() > 1,
            today => present::ru_date(&today.to_string()), ics_created => ics_created.as_deref().map(present::ru_date),
            may_assign => (viewer.is_manager || viewer.is_admin) && viewer.may_write(),
        },
    )
}

/// A task the viewer is about to change (done, reopen, tick, reassign): the form's CSRF token checked, write access
/// required, and the task visible to them (404 otherwise, like a task that does not exist).
async fn task_to_change(
    web: &Web,
    viewer: &Viewer,
    csrf: &str,
    id: i64,
) -> Result<(store::TaskListRow, Directory), WebError> {
    viewer.check_csrf(csrf)?;
    if !viewer.may_write() {
        return Err(WebError::Forbidden);
    }
    visible_task(web, viewer, id).await
}

/// A task the viewer may see, or 404: the same answer whether there is no such task or it is not theirs, so ids
/// tell nothing about what exists.
async fn visible_task(
    web: &Web,
    viewer: &Viewer,
    id: i64,
) -> Result<(store::TaskListRow, Directory), WebError> {
    let mut conn = web.store().acquire().await?;
    let task = store::web_task_row(&mut conn, id)
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
    present::word(key, labels)
}

/// Provenance as label/value lines in words (it is a JSON object written by the pipeline or the tax calendar);
/// internal keys (the calendar's event code and period) are left out.
fn provenance_lines(provenance: &serde_json::Value) -> Vec<(String, String)> {
    match provenance {
        serde_json::Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| {
                let label = present::provenance_label(k)?;
                let label = if label.is_empty() {
                    k.clone()
                } else {
                    label.to_owned()
                };
                Some((label, present::provenance_value(k, v)))
            })
            .collect(),
        other => vec![("откуда срок".into(), other.to_string())],
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    /// Just marked done: say so, with the undo.
    #[serde(default)]
    done: String,
    /// Just opened again.
    #[serde(default)]
    reopened: String,
}

pub async fn show(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<ShowQuery>,
) -> Result<Html<String>, WebError> {
    let (task, directory) = visible_task(&web, &viewer, id).await?;
    let mut mail = match task.message {
        Some(m) => mail_view(&web, m).await?,
        None => None,
    };
    let tz = web.settings().general.timezone;
    if let Some(m) = mail.as_mut() {
        for (k, v) in m.headers.iter_mut() {
            if k == "Дата" {
                *v = present::ru_datetime(v, &tz);
            }
        }
    }
    let mut conn = web.store().acquire().await?;
    // The demand's checklist belongs with the task that answers it.
    let checklist = match task.case_id {
        Some(case) if task.step == "answer" => store::case_checklist(&mut conn, case).await?,
        _ => Vec::new(),
    };
    // The case: the other mails joined to it and its other tasks (those the viewer may see).
    let vis = visibility(&viewer, &directory, web.today());
    let (case_mails, case_tasks) = match task.case_id {
        Some(case) => {
            let mails: Vec<_> = store::case_mails(&mut conn, case)
                .await?
                .into_iter()
                .filter(|m| Some(m.id) != task.message)
                .map(|m| {
                    minijinja::context! {
                        id => m.id, date => present::ru_date(&m.received_date), from => m.from_addr,
                        subject => m.subject, status => present::word(m.status.as_str(), present::MAIL_STATUSES),
                    }
                })
                .collect();
            let tasks: Vec<_> = store::case_tasks(&mut conn, case)
                .await?
                .into_iter()
                .filter(|t| t.id != task.id)
                .filter(|t| {
                    vis.sees(
                        &viewer,
                        &directory,
                        t.assignee.as_deref(),
                        t.client_inn.as_deref(),
                    )
                })
                .map(|t| {
                    minijinja::context! {
                        id => t.id, title => t.title.clone(), due => present::ru_date(&t.due),
                        status => present::word(t.status.as_str(), present::TASK_STATUSES),
                        step => present::word(&t.step, present::STEPS),
                    }
                })
                .collect();
            (mails, tasks)
        }
        None => (Vec::new(), Vec::new()),
    };
    drop(conn);
    let provenance: serde_json::Value =
        serde_json::from_str(&task.provenance).unwrap_or(serde_json::Value::Null);
    let cal = web.pipeline().ctx().calendar;
    let sentence = present::deadline_sentence(
        &provenance,
        &present::DeadlineFacts {
            demand: task
                .demand_number
                .as_deref()
                .zip(task.demand_date.as_deref()),
            received: task.received_date.as_deref(),
            due: &task.due,
        },
        &cal,
    );
    let today = web.today();
    let due = NaiveDate::parse_from_str(&task.due, "%Y-%m-%d").unwrap_or(today);
    let kind = present::task_kind(task.event.as_deref(), task.case_id);
    let demand_title = task.kind.as_deref().and_then(|k| {
        web.pipeline()
            .ctx()
            .demands
            .kind(k)
            .map(|d| d.title.clone())
    });
    let person = |email: Option<&str>| {
        email.map(|e| {
            directory
                .accountant(e)
                .map(|a| format!("{} ({e})", a.name))
                .unwrap_or_else(|| e.to_owned())
        })
    };
    let colleagues: Vec<_> = directory
        .accountants()
        .filter(|a| Some(a.email.as_str()) != task.assignee.as_deref())
        .map(|a| minijinja::context! { email => a.email.clone(), name => a.name.clone() })
        .collect();
    let open = task.status == store::TaskStatus::Open;
    web.render(
        "task.html",
        Some(&viewer),
        minijinja::context! {
            task => task.clone(), provenance => provenance_lines(&provenance), mail => mail,
            colleagues => colleagues, may_write => viewer.may_write() && open,
            may_undo => viewer.may_write() && !open,
            checklist => checklist, may_tick => viewer.may_write(),
            sentence => sentence, due_ru => present::ru_date(&task.due),
            relative => if open { present::relative_due(due, today, &cal, task.client_region.as_deref()) } else { String::new() },
            kind => kind, kind_label => present::word(kind, present::TASK_KINDS), demand_title => demand_title,
            demand_date_ru => task.demand_date.as_deref().map(present::ru_date),
            step_label => present::word(&task.step, present::STEPS), role_label => present::word(&task.role, present::ROLES),
            priority_label => present::word(&task.priority, present::PRIORITIES),
            status_label => present::word(task.status.as_str(), present::TASK_STATUSES),
            assignee => person(task.assignee.as_deref()), done_by => person(task.done_by.as_deref()),
            done_at => task.done_at.as_deref().map(|t| present::ru_datetime(t, &tz)),
            just_done => q.done == "1" && !open, just_reopened => q.reopened == "1" && open,
            case_mails => case_mails, case_tasks => case_tasks,
        },
    )
}

/// Writes a task event to the hash-chained log inside the open transaction, and queues `sink_event` (`done`,
/// `reopened`, `reassigned`) for the firm's task sinks in the same transaction, keyed by the log entry.
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
    let (task, _) = task_to_change(&web, &viewer, &form.csrf, id).await?;
    let at = store::timestamp(Utc::now());
    let mut tx = web.store().begin().await?;
    if !store::mark_task_done_by(&mut tx, id, &viewer.email, &at).await? {
        return Err(WebError::BadRequest("Задача уже закрыта.".into()));
    }
    log_task_event(
        &mut tx,
        "task_done",
        store::EVENT_DONE,
        &task.view,
        serde_json::json!({"task": id, "step": task.step, "assignee": task.assignee, "by": viewer.email}),
    )
    .await?;
    tx.commit().await.context("mark a task done")?;
    tracing::info!(task_id = id, account = %viewer.email, "task done");
    Ok(Redirect::to(&format!("/tasks/{id}?done=1#flash")).into_response())
}

/// The undo of done: the task is open again, as it was; logged like every change, and the firm's task sinks hear
/// of it (Bitrix24 renews its task).
pub async fn reopen(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    let (task, _) = task_to_change(&web, &viewer, &form.csrf, id).await?;
    let mut tx = web.store().begin().await?;
    if !store::reopen_task(&mut tx, id).await? {
        return Err(WebError::BadRequest("Задача и так открыта.".into()));
    }
    log_task_event(
        &mut tx,
        "task_reopened",
        store::EVENT_REOPENED,
        &task.view,
        serde_json::json!({"task": id, "step": task.step, "assignee": task.assignee,
            "done_by": task.done_by, "done_at": task.done_at, "by": viewer.email}),
    )
    .await?;
    tx.commit().await.context("reopen a task")?;
    tracing::info!(task_id = id, account = %viewer.email, "task reopened");
    Ok(Redirect::to(&format!("/tasks/{id}?reopened=1#flash")).into_response())
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
    let (task, _) = task_to_change(&web, &viewer, &form.csrf, id).await?;
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
    /// `queue`: the form is on the unassigned queue, and the answer goes back there.
    #[serde(default)]
    back: String,
}

pub async fn reassign(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<ReassignForm>,
) -> Result<Response, WebError> {
    let (task, directory) = task_to_change(&web, &viewer, &form.csrf, id).await?;
    let to = form.to.trim().to_lowercase();
    // A task in the unassigned queue goes to the manager's own team (an admin: anyone).
    if task.assignee.is_none()
        && !(viewer.is_admin || to == viewer.email || viewer.team.contains(&to))
    {
        return Err(WebError::BadRequest(format!(
            "{to} не в вашей команде: задачу из очереди можно взять себе или передать своему сотруднику."
        )));
    }
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
        &task.view,
        serde_json::json!({"task": id, "step": task.step, "from": task.assignee, "to": to, "by": viewer.email}),
    )
    .await?;
    tx.commit().await.context("reassign a task")?;
    tracing::info!(task_id = id, account = %viewer.email, to = %to, "task reassigned");
    // Back to the list with what happened: the task may no longer be the viewer's to see, so not to its page.
    let mut back =
        form_urlencoded::Serializer::for_suffix(String::from("/tasks?"), "/tasks?".len());
    if form.back == "queue" {
        back.append_pair("queue", "unassigned");
    }
    back.append_pair("passed", &id.to_string());
    back.append_pair("to", &to);
    Ok(Redirect::to(&format!("{}#flash", back.finish())).into_response())
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
    let tasks = store::web_task_list(
        &mut conn,
        &store::TaskListFilter {
            owners: store::TaskOwners::person(&person),
            status: Some("open".to_owned()),
            ..Default::default()
        },
        store::TaskOrder::Due,
        0,
        FEED_LIMIT,
    )
    .await?;
    let owner = directory
        .accountant(&person)
        .map(|a| a.name.clone())
        .unwrap_or_else(|| person.clone());
    let base = web
        .settings()
        .web
        .base_url
        .as_deref()
        .map(|b| b.trim_end_matches('/').to_owned());
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        super::feed::feed(&owner, &tasks, base.as_deref(), Utc::now()),
    )
        .into_response())
}

/// Open tasks one feed lists at most: far more than a person's work, a bound on a feed's size.
const FEED_LIMIT: i64 = 5000;

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
    // The full address when `[web] base_url` says where the server is; the path alone otherwise.
    let base = web
        .settings()
        .web
        .base_url
        .as_deref()
        .map(|b| b.trim_end_matches('/').to_owned());
    let page = web.render(
        "feed.html",
        Some(&viewer),
        minijinja::context! { token => token, absolute => base.is_some(), base => base },
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

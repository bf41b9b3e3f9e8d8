//! The auditor's pages: the processed-mail log with filters and paging, one mail's whole story (what `taxinbox
//! audit show` reads), the chain's `audit verify` status, and the CSV/JSONL export of the filtered view through
//! the export writer of `audit` (one CSV contract). Auditors and admins only; nothing here writes.

use super::{present, Viewer, Web, WebError};
use crate::audit;
use crate::store::{self, MailFilter};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Mails per page of the log.
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogQuery {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub client: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub mailbox: String,
    /// Searched in the subject, the sender, the INN and the demand number.
    #[serde(default)]
    pub q: String,
    /// Older than this mail id (the next page).
    pub before: Option<i64>,
    /// Newer than this mail id (the previous page).
    pub after: Option<i64>,
    /// `csv` (Russian Excel: `;`, Russian headers, UTF-8 BOM), `csv-rfc` (the `audit export` CSV) or `jsonl`.
    #[serde(default)]
    pub format: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn date(s: &str, field: &str) -> Result<Option<String>, WebError> {
    match some(s) {
        None => Ok(None),
        Some(d) => chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
            .map(|d| Some(d.to_string()))
            .map_err(|_| {
                WebError::BadRequest(format!(
                    "{field}: дата в виде ГГГГ-ММ-ДД, например 2026-03-15"
                ))
            }),
    }
}

impl LogQuery {
    fn filter(&self) -> Result<MailFilter, WebError> {
        Ok(MailFilter {
            received_from: date(&self.from, "с")?,
            received_to: date(&self.to, "по")?,
            client: some(&self.client),
            category: some(&self.category),
            status: some(&self.status),
            mailbox: some(&self.mailbox),
        })
    }

    /// The filters as a query string, for paging and export links.
    fn query_string(&self) -> String {
        let pairs = [
            ("from", &self.from),
            ("to", &self.to),
            ("client", &self.client),
            ("category", &self.category),
            ("status", &self.status),
            ("mailbox", &self.mailbox),
            ("q", &self.q),
        ];
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if !v.trim().is_empty() {
                query.append_pair(k, v.trim());
            }
        }
        query.finish()
    }
}

pub async fn log(
    State(web): State<Web>,
    viewer: Viewer,
    Query(q): Query<LogQuery>,
) -> Result<Response, WebError> {
    viewer.require_all()?;
    // The filters' choices, on the page whatever else it shows.
    let choices = minijinja::context! {
        categories => present::CATEGORIES,
        statuses => [present::MAIL_STATUSES[0], present::MAIL_STATUSES[1], present::MAIL_STATUSES[2]],
    };
    let filter = match q.filter() {
        Ok(filter) => filter,
        // A mistyped filter: the page again with what was typed and what is wrong, not an error page that loses it.
        Err(WebError::BadRequest(why)) => {
            let page = web.render(
                "log.html",
                Some(&viewer),
                minijinja::context! {
                    q => q, mails => Vec::<store::MailListRow>::new(), total => 0, error => why, ..choices
                },
            )?;
            return Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response());
        }
        Err(e) => return Err(e),
    };
    let search = Some(q.q.as_str()).filter(|s| !s.trim().is_empty());
    let page = match (q.before, q.after) {
        (Some(b), _) => store::LogPage::Before(b),
        (None, Some(a)) => store::LogPage::After(a),
        (None, None) => store::LogPage::Newest,
    };
    let mut conn = web.store().acquire().await?;
    let mails = store::mail_page(&mut conn, &filter, search, page, PAGE_SIZE).await?;
    let total = store::mail_count(&mut conn, &filter, search).await?;
    // Older mail exists past a full page (or when coming back from older pages); newer mail past the first.
    let next = match (mails.last(), page) {
        (Some(last), store::LogPage::After(_)) => Some(last.id),
        (Some(last), _) if mails.len() as i64 == PAGE_SIZE => Some(last.id),
        _ => None,
    };
    let prev = match (mails.first(), page) {
        (_, store::LogPage::Newest) => None,
        (Some(first), store::LogPage::After(_)) => {
            store::mail_newer_exists(&mut conn, &filter, search, first.id)
                .await?
                .then_some(first.id)
        }
        (Some(first), _) => Some(first.id),
        (None, _) => None,
    };
    let qs = q.query_string();
    web.render(
        "log.html",
        Some(&viewer),
        minijinja::context! {
            q => q, mails => mails, next => next, prev => prev, qs => qs, total => total, ..choices
        },
    )
    .map(IntoResponse::into_response)
}

pub async fn export(
    State(web): State<Web>,
    viewer: Viewer,
    Query(q): Query<LogQuery>,
) -> Result<Response, WebError> {
    viewer.require_all()?;
    let format = match q.format.as_str() {
        "jsonl" => Some(audit::ExportFormat::Jsonl),
        "csv-rfc" => Some(audit::ExportFormat::Csv),
        // Russian Excel's CSV.
        "csv" | "" => None,
        other => {
            return Err(WebError::BadRequest(format!(
                "Формат выгрузки «{other}» неизвестен: csv (для Excel), csv-rfc или jsonl."
            )))
        }
    };
    let filter = q.filter()?;
    let search = Some(q.q.as_str()).filter(|s| !s.trim().is_empty());
    let mut conn = web.store().acquire().await?;
    let mut rows = audit::export_rows(&mut conn, &filter).await?;
    if search.is_some() {
        // The export holds what the page shows: the search narrows it to the mails the log finds.
        let mut found = std::collections::BTreeSet::new();
        let mut page = store::LogPage::Newest;
        loop {
            let batch =
                store::mail_page(&mut conn, &filter, search, page, EXPORT_SEARCH_BATCH).await?;
            found.extend(batch.iter().map(|m| m.id));
            match batch.last() {
                Some(last) if batch.len() as i64 == EXPORT_SEARCH_BATCH => {
                    page = store::LogPage::Before(last.id)
                }
                _ => break,
            }
        }
        rows.retain(|r| found.contains(&r.id));
    }
    let mut bytes = Vec::new();
    let (mime, ext) = match format {
        Some(format) => {
            audit::write_export(&mut bytes, format, &rows)?;
            match format {
                audit::ExportFormat::Jsonl => ("application/x-ndjson; charset=utf-8", "jsonl"),
                audit::ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
            }
        }
        None => {
            excel_csv(&mut bytes, &rows, &web.settings().general.timezone);
            ("text/csv; charset=utf-8", "csv")
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"taxinbox-log.{ext}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

/// Mails read per step when a search narrows an export.
const EXPORT_SEARCH_BATCH: i64 = 1000;

/// The columns of the Excel CSV, in Russian.
const EXCEL_HEADERS: [&str; 14] = [
    "№ письма",
    "Получено",
    "Ящик",
    "От",
    "Тема",
    "ИНН клиента",
    "Клиент",
    "Категория",
    "Вид",
    "Правило",
    "Состояние",
    "Причина или ошибка",
    "Задачи",
    "SHA-256",
];

/// One CSV field for Russian Excel: quoted when it holds `;`, a quote or a line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so that a subject is never taken for a formula.
fn excel_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The log as Russian Excel opens it with a double click: UTF-8 with a BOM, `;` between fields, CRLF, Russian
/// headers and words for the codes, dates as дд.мм.гггг.
pub fn excel_csv(out: &mut Vec<u8>, rows: &[audit::ExportRow], _tz: &chrono_tz::Tz) {
    out.extend_from_slice("\u{feff}".as_bytes());
    let mut line = |fields: Vec<String>| {
        let joined: Vec<String> = fields.iter().map(|f| excel_field(f)).collect();
        out.extend_from_slice(joined.join(";").as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(EXCEL_HEADERS.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        let tasks: Vec<String> = r
            .tasks
            .iter()
            .map(|t| {
                format!(
                    "{} — срок {}, {}{}",
                    t.title,
                    present::ru_date(&t.due),
                    present::word(t.status.as_str(), present::TASK_STATUSES),
                    t.assignee
                        .as_deref()
                        .map(|a| format!(", {a}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        line(vec![
            r.id.to_string(),
            present::ru_date(&r.received),
            r.mailbox.clone(),
            r.from.clone(),
            r.subject.clone(),
            r.client_inn.clone().unwrap_or_default(),
            r.client_name.clone().unwrap_or_default(),
            r.category
                .as_deref()
                .map(|c| present::word(c, present::CATEGORIES))
                .unwrap_or_default(),
            r.kind.clone().unwrap_or_default(),
            r.rule.clone().unwrap_or_default(),
            present::word(r.status.as_str(), present::MAIL_STATUSES),
            r.error
                .clone()
                .or_else(|| r.reason.clone())
                .unwrap_or_default(),
            tasks.join(" | "),
            r.sha256.clone(),
        ]);
    }
}

#[derive(Debug, Serialize)]
struct HistoryLine {
    seq: i64,
    at: String,
    event: String,
    text: String,
}

pub async fn mail(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(mq): Query<MailQuery>,
) -> Result<Response, WebError> {
    if !viewer.sees_all {
        // An accountant reads a mail through its task: to the first task of it they may see, and otherwise the
        // same 404 as for a mail that does not exist (a 403 would say that it does).
        let mut conn = web.store().acquire().await?;
        let directory = store::load_directory(&mut conn).await?;
        let vis = super::auth::visibility(&viewer, &directory, web.today());
        let tasks = store::tasks_of_message(&mut conn, id).await?;
        let theirs = tasks.iter().find(|t| {
            vis.sees(
                &viewer,
                &directory,
                t.assignee.as_deref(),
                t.client_inn.as_deref(),
            )
        });
        return match theirs {
            Some(t) => {
                Ok(axum::response::Redirect::to(&format!("/tasks/{}", t.id)).into_response())
            }
            None => Err(WebError::NotFound),
        };
    }
    let story = {
        let mut conn = web.store().acquire().await?;
        audit::story(&mut conn, id)
            .await?
            .ok_or(WebError::NotFound)?
    };
    let view = super::tasks::mail_view(&web, id).await?;
    let history: Vec<HistoryLine> = story
        .history
        .iter()
        .map(|l| HistoryLine {
            seq: l.seq,
            at: present::ru_datetime(&l.at, &web.settings().general.timezone),
            event: l.event.clone(),
            text: match l.payload.get("trace") {
                Some(trace) => audit::render_trace(trace),
                None => serde_json::to_string_pretty(&l.payload).unwrap_or_default(),
            },
        })
        .collect();
    // The tasks with their ids (for links), and the case's other mails.
    let (tasks, joined) = {
        let mut conn = web.store().acquire().await?;
        let tasks: Vec<_> = store::tasks_of_message(&mut conn, id)
            .await?
            .into_iter()
            .map(|t| {
                minijinja::context! {
                    id => t.id, step => present::word(&t.step, present::STEPS), title => t.title,
                    assignee => t.assignee, due => present::ru_date(&t.due),
                    status => present::word(t.status.as_str(), present::TASK_STATUSES),
                }
            })
            .collect();
        let case = store::mail(&mut conn, id).await?.and_then(|m| m.case_id);
        let joined: Vec<_> = match case {
            Some(case) => store::case_mails(&mut conn, case)
                .await?
                .into_iter()
                .filter(|m| m.id != id)
                .map(|m| {
                    minijinja::context! {
                        id => m.id, date => present::ru_date(&m.received_date), subject => m.subject,
                        from => m.from_addr,
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        (tasks, joined)
    };
    let notifications: Vec<_> = story
        .notifications
        .iter()
        .map(|n| {
            minijinja::context! {
                id => n.id, kind => n.kind, recipient => n.recipient, status => n.status,
                attempts => n.attempts, sent_at => n.sent_at, error => n.error,
            }
        })
        .collect();
    let raw = match story.raw {
        audit::RawState::Kept { size, matches_hash } => {
            format!(
                "хранится, {size} байт, хеш {}",
                if matches_hash {
                    "совпадает"
                } else {
                    "НЕ совпадает"
                }
            )
        }
        audit::RawState::Purged { size } => {
            format!("удалено по сроку хранения ({size} байт), хеш сохранён")
        }
        audit::RawState::Missing => "отсутствует".to_owned(),
    };
    web.render(
        "mail.html",
        Some(&viewer),
        minijinja::context! {
            id => story.id, message_id => story.message_id, source => story.source, mailbox => story.mailbox,
            fetched_at => story.fetched_at, processed_at => story.processed_at, received => story.received,
            from => story.from, subject => story.subject, sha256 => story.sha256, raw => raw,
            headers => story.headers, decoded_headers => story.decoded_headers, facts => serde_json::to_string_pretty(&story.facts).unwrap_or_default(),
            status => story.status, category => story.category, kind => story.kind, client => story.client,
            demand => story.demand, joins => story.joins, rule => story.rule, ruleset => story.ruleset,
            ruleset_recorded => story.ruleset_recorded, reason => story.reason, error => story.error,
            tasks => tasks, joined => joined, notifications => notifications, history => history, mail => view,
            quarantined => story.status == store::MessageStatus::Quarantined,
            reprocessed => mq.reprocessed, reprocessed_tasks => mq.tasks,
        },
    )
    .map(IntoResponse::into_response)
}

#[derive(Debug, Default, Deserialize)]
pub struct MailQuery {
    /// After a reprocess from the quarantine: the mail's new state and how many tasks it now has.
    reprocessed: Option<String>,
    tasks: Option<usize>,
}

pub async fn verify(State(web): State<Web>, viewer: Viewer) -> Result<Html<String>, WebError> {
    viewer.require_all()?;
    let mut conn = web.store().acquire().await?;
    let v = audit::verify(&mut conn).await?;
    web.render(
        "verify.html",
        Some(&viewer),
        minijinja::context! { intact => v.is_intact(), report => v.to_string() },
    )
}

//! The auditor's pages: the processed-mail log with filters and paging, one mail's whole story (what `taxinbox
//! audit show` reads), the chain's `audit verify` status, and the CSV/JSONL export of the filtered view through
//! the export writer of `audit` (one CSV contract). Auditors and admins only; nothing here writes.

use super::{Viewer, Web, WebError};
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
    /// Older than this mail id (the next page).
    pub before: Option<i64>,
    /// `csv` or `jsonl`, for the export.
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
) -> Result<Html<String>, WebError> {
    viewer.require_all()?;
    let filter = q.filter()?;
    let mut conn = web.store().acquire().await?;
    let mails = store::mail_page(&mut conn, &filter, q.before, PAGE_SIZE).await?;
    let next = (mails.len() as i64 == PAGE_SIZE)
        .then(|| mails.last().map(|m| m.id))
        .flatten();
    let qs = q.query_string();
    web.render(
        "log.html",
        Some(&viewer),
        minijinja::context! { q => q, mails => mails, next => next, qs => qs },
    )
}

pub async fn export(
    State(web): State<Web>,
    viewer: Viewer,
    Query(q): Query<LogQuery>,
) -> Result<Response, WebError> {
    viewer.require_all()?;
    let format = match q.format.as_str() {
        "jsonl" => audit::ExportFormat::Jsonl,
        "csv" | "" => audit::ExportFormat::Csv,
        other => {
            return Err(WebError::BadRequest(format!(
                "формат выгрузки {other:?}: только csv или jsonl"
            )))
        }
    };
    let filter = q.filter()?;
    let mut conn = web.store().acquire().await?;
    let rows = audit::export_rows(&mut conn, &filter).await?;
    let mut bytes = Vec::new();
    audit::write_export(&mut bytes, format, &rows)?;
    let (mime, ext) = match format {
        audit::ExportFormat::Jsonl => ("application/x-ndjson; charset=utf-8", "jsonl"),
        audit::ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"taxinbox-log.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
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
) -> Result<Html<String>, WebError> {
    viewer.require_all()?;
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
            at: l.at.clone(),
            event: l.event.clone(),
            text: match l.payload.get("trace") {
                Some(trace) => audit::render_trace(trace),
                None => serde_json::to_string_pretty(&l.payload).unwrap_or_default(),
            },
        })
        .collect();
    let tasks: Vec<_> = story
        .tasks
        .iter()
        .map(|t| {
            minijinja::context! {
                step => t.step, title => t.title, assignee => t.assignee, due => t.due, status => t.status,
                provenance => t.provenance.to_string(),
            }
        })
        .collect();
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
            headers => story.headers, facts => serde_json::to_string_pretty(&story.facts).unwrap_or_default(),
            status => story.status, category => story.category, kind => story.kind, client => story.client,
            demand => story.demand, joins => story.joins, rule => story.rule, ruleset => story.ruleset,
            ruleset_recorded => story.ruleset_recorded, reason => story.reason, error => story.error,
            tasks => tasks, notifications => notifications, history => history, mail => view,
            quarantined => story.status == store::MessageStatus::Quarantined,
        },
    )
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

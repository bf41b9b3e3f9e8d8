//! The admin's pages: the quarantine with a reprocess button (the code of `taxinbox reprocess`), the loaded
//! ruleset and its files, a rule playground (a pasted or uploaded mail through `Pipeline::evaluate` under the
//! current rules or a candidate rules folder — pure, nothing stored), and the mailboxes' liveness.

use super::auth::CsrfForm;
use super::{Viewer, Web, WebError};
use crate::pipeline::{self, Pipeline};
use crate::store;
use anyhow::Context as _;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Serialize;

/// How many quarantined mails the page lists (newest first).
const QUARANTINE_LIMIT: i64 = 200;

/// Largest mail the playground accepts; real mail with attachments stays well under it.
pub const PLAYGROUND_MAX_BYTES: usize = 25 * 1024 * 1024;

pub async fn quarantine(State(web): State<Web>, viewer: Viewer) -> Result<Html<String>, WebError> {
    viewer.require_admin()?;
    let mut conn = web.store().acquire().await?;
    let mails = store::quarantine_page(&mut conn, QUARANTINE_LIMIT).await?;
    web.render(
        "quarantine.html",
        Some(&viewer),
        minijinja::context! { mails => mails, limit => QUARANTINE_LIMIT },
    )
}

pub async fn reprocess(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.require_admin()?;
    viewer.check_csrf(&form.csrf)?;
    let mut tx = web.store().begin().await?;
    let report = match web.pipeline().reprocess(&mut tx, id, Utc::now()).await {
        Ok(r) => r,
        Err(e) => {
            return Err(WebError::BadRequest(format!(
                "Не удалось обработать письмо {id} повторно: {e:#}"
            )))
        }
    };
    tx.commit().await.context("commit a reprocessed mail")?;
    tracing::info!(message = id, account = %viewer.email, status = report.status.as_str(), "mail reprocessed from the web view");
    // Back to the mail, saying what happened: its state now and how many tasks it has.
    let mut back = form_urlencoded::Serializer::for_suffix(
        format!("/mail/{id}?"),
        format!("/mail/{id}?").len(),
    );
    back.append_pair("reprocessed", report.status.as_str());
    back.append_pair("tasks", &report.tasks.len().to_string());
    Ok(Redirect::to(&format!("{}#flash", back.finish())).into_response())
}

pub async fn rules(State(web): State<Web>, viewer: Viewer) -> Result<Html<String>, WebError> {
    viewer.require_admin()?;
    let rules = web.pipeline().rules.snapshot();
    let version = rules.version().to_owned();
    let files: Vec<String> = rules.file_names().map(str::to_owned).collect();
    let mut conn = web.store().acquire().await?;
    let recorded = store::ruleset(&mut conn, &version)
        .await?
        .map(|r| r.loaded_at);
    web.render(
        "rules.html",
        Some(&viewer),
        minijinja::context! {
            version => version, files => files, dir => rules.dir().display().to_string(), recorded => recorded,
        },
    )
}

pub async fn playground_form(
    State(web): State<Web>,
    viewer: Viewer,
) -> Result<Html<String>, WebError> {
    viewer.require_admin()?;
    web.render("playground.html", Some(&viewer), minijinja::context! {})
}

/// What the playground shows of one evaluation.
#[derive(Debug, Serialize)]
pub struct PlaygroundResult {
    pub ruleset: String,
    pub ok: bool,
    pub error: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub rule: Option<String>,
    pub client_inn: Option<String>,
    pub reason: Option<String>,
    pub tasks: Vec<PlaygroundTask>,
    pub trace: String,
    pub subject: String,
    pub from: String,
}

#[derive(Debug, Serialize)]
pub struct PlaygroundTask {
    pub step: String,
    pub title: String,
    pub assignee: Option<String>,
    pub due: String,
    pub provenance: String,
}

/// Evaluates one mail; nothing is stored (`Pipeline::evaluate` does no I/O).
pub fn try_mail(pipeline: &Pipeline, raw: &[u8]) -> PlaygroundResult {
    let eval = pipeline.evaluate(raw, "playground", Utc::now());
    let trace = crate::audit::render_trace(&pipeline::trace(&eval));
    let mut result = PlaygroundResult {
        ruleset: eval.ruleset.clone(),
        ok: eval.outcome.is_ok(),
        error: None,
        category: None,
        kind: None,
        rule: None,
        client_inn: None,
        reason: None,
        tasks: Vec::new(),
        trace,
        subject: eval.subject.clone(),
        from: eval.from.clone(),
    };
    match &eval.outcome {
        Ok(r) => {
            result.category = Some(r.decision.category.clone());
            result.kind = r.decision.kind.clone();
            result.rule = r.rule.clone();
            result.client_inn = r.client_inn.clone();
            result.reason = Some(r.decision.reason.clone()).filter(|s| !s.is_empty());
            result.tasks = r
                .tasks
                .iter()
                .map(|t| PlaygroundTask {
                    step: t.step.clone(),
                    title: t.title.clone(),
                    assignee: t.assignee.clone(),
                    due: t.due.to_string(),
                    provenance: t.provenance.to_string(),
                })
                .collect();
        }
        Err(e) => result.error = Some(e.clone()),
    }
    result
}

/// The candidate rule folder an admin named, if it lies under `[web] playground_root` once every `..` and link is
/// resolved; any other server path is refused (the playground must not read folders it was not given).
fn candidate_folder(
    root: Option<&std::path::Path>,
    candidate: &str,
) -> Result<std::path::PathBuf, WebError> {
    let Some(root) = root else {
        return Err(WebError::BadRequest(
            "Папки с правилами-кандидатами не настроены ([web] playground_root).".into(),
        ));
    };
    let refused = || {
        WebError::BadRequest(format!(
            "Папка {candidate} не найдена внутри папки кандидатов ([web] playground_root)."
        ))
    };
    let root = root.canonicalize().map_err(|_| refused())?;
    let path = root.join(candidate).canonicalize().map_err(|_| refused())?;
    if path.starts_with(&root) && path != root {
        Ok(path)
    } else {
        Err(refused())
    }
}

pub async fn playground(
    State(web): State<Web>,
    viewer: Viewer,
    mut form: Multipart,
) -> Result<Response, WebError> {
    viewer.require_admin()?;
    let mut csrf = String::new();
    let mut pasted = String::new();
    let mut uploaded: Vec<u8> = Vec::new();
    let mut candidate = String::new();
    // A multipart form has a handful of fields; the bound stops a hostile request with thousands.
    for _ in 0..16 {
        let Some(field) = form
            .next_field()
            .await
            .map_err(|e| WebError::BadRequest(format!("форма: {e}")))?
        else {
            break;
        };
        let name = field.name().unwrap_or("").to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| WebError::BadRequest(format!("форма: {e}")))?;
        if bytes.len() > PLAYGROUND_MAX_BYTES {
            return Err(WebError::BadRequest("Письмо больше 25 МБ.".into()));
        }
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "mail" => pasted = String::from_utf8_lossy(&bytes).into_owned(),
            "file" => uploaded = bytes.to_vec(),
            "rules_dir" => candidate = String::from_utf8_lossy(&bytes).trim().to_owned(),
            _ => {}
        }
    }
    // What the form held comes back with any error: the pasted mail and the folder are not lost.
    let again = |why: String| -> Result<Response, WebError> {
        let page = web.render(
            "playground.html",
            Some(&viewer),
            minijinja::context! { error => why, mail => pasted, rules_dir => candidate },
        )?;
        Ok((StatusCode::BAD_REQUEST, page).into_response())
    };
    match viewer.check_csrf(&csrf) {
        Ok(()) => {}
        // The page drawn again carries the session's current token: sending it once more works.
        Err(WebError::Csrf) => {
            return again("Форма устарела: проверьте письмо и отправьте его ещё раз.".to_owned())
        }
        Err(e) => return Err(e),
    }
    match evaluate_in_playground(&web, &pasted, uploaded, &candidate).await {
        Ok(result) => web
            .render(
                "playground.html",
                Some(&viewer),
                minijinja::context! { result => result, mail => pasted, rules_dir => candidate },
            )
            .map(IntoResponse::into_response),
        Err(WebError::BadRequest(why)) => again(why),
        Err(e) => Err(e),
    }
}

/// The playground's decision on the pasted or uploaded mail, under the current rules or a candidate folder.
async fn evaluate_in_playground(
    web: &Web,
    pasted: &str,
    uploaded: Vec<u8>,
    candidate: &str,
) -> Result<PlaygroundResult, WebError> {
    // A pasted mail has the browser's CRLF or LF line ends; either parses.
    let raw = if uploaded.is_empty() {
        pasted.as_bytes().to_vec()
    } else {
        uploaded
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(WebError::BadRequest(
            "Вставьте письмо целиком (заголовки и текст) или выберите файл .eml.".into(),
        ));
    }
    let candidate_pipeline;
    let pipeline = if candidate.is_empty() {
        web.pipeline()
    } else {
        let mut settings = web.settings().clone();
        settings.rules.dir = candidate_folder(settings.web.playground_root.as_deref(), candidate)?;
        let mut conn = web.store().acquire().await?;
        let directory = store::load_directory(&mut conn).await?;
        candidate_pipeline = crate::app::build_pipeline(&settings, directory).map_err(|e| {
            WebError::BadRequest(format!("Правила из {candidate} не загрузились: {e:#}"))
        })?;
        &candidate_pipeline
    };
    Ok(try_mail(pipeline, &raw))
}

pub async fn mailboxes(State(web): State<Web>, viewer: Viewer) -> Result<Html<String>, WebError> {
    viewer.require_admin()?;
    let health = web.metrics().mailboxes();
    // The configured sources and whatever the daemon reports on; mail from the command line (`cli`) is no mailbox.
    let mut names: std::collections::BTreeSet<String> = health.keys().cloned().collect();
    names.extend(web.settings().mailboxes.iter().map(|m| m.name.clone()));
    names.extend(web.settings().maildirs.iter().map(|m| m.name.clone()));
    let mut conn = web.store().acquire().await?;
    let activity =
        store::mailbox_activity(&mut conn, &names.iter().cloned().collect::<Vec<_>>()).await?;
    let rows: Vec<_> = names
        .into_iter()
        .map(|name| {
            let h = health.get(&name);
            let a = activity.iter().find(|a| a.mailbox == name);
            let alarm = h
                .map(|h| h.state == crate::metrics::MailboxState::Stopped && h.last_error.is_some())
                .unwrap_or(false);
            minijinja::context! {
                name => name,
                state => h.and_then(|h| serde_json::to_value(h.state).ok()),
                last_poll => h.and_then(|h| h.last_poll.clone()),
                last_error => h.and_then(|h| h.last_error.clone()),
                last_mail => a.map(|a| a.last_fetched.clone()),
                alarm => alarm,
            }
        })
        .collect();
    web.render(
        "mailboxes.html",
        Some(&viewer),
        minijinja::context! { rows => rows },
    )
}

#[cfg(test)]
mod tests {
    use super::candidate_folder;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_playground_loads_candidate_folders_only_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("candidates");
        std::fs::create_dir_all(root.join("next")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        assert!(candidate_folder(Some(&root), "next").is_ok());
        assert!(candidate_folder(Some(&root), &root.join("next").display().to_string()).is_ok());
        for outside in [
            "../elsewhere",
            "/etc",
            "",
            "next/../../elsewhere",
            "missing",
        ] {
            assert!(candidate_folder(Some(&root), outside).is_err(), "{outside}");
        }
        assert!(candidate_folder(None, "next").is_err());
    }
}

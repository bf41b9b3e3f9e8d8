//! The web view for accountants, auditors and admins, served by `taxinbox run` beside `/healthz` and `/metrics`.
//!
//! Server-rendered HTML (minijinja templates embedded in the binary; an admin may override any of them by putting
//! a file of the same name in `<rules>/web/`), one small stylesheet, no script needed. Every page checks the
//! viewer's role ([`auth`]): an accountant sees their own tasks, their team's (as a manager) and those of the
//! people they stand in for today; an auditor sees everything read-only; an admin everything, with the
//! quarantine, the rules and a playground. Writes (done, reassign, reprocess, a new feed token) are POST forms
//! with a per-session CSRF token and go to the hash-chained log like every other change.
//!
//! The web view reuses what the command line does rather than repeating it: `audit::story`/`export_rows`/
//! `write_csv`/`verify`, `Pipeline::reprocess` and the pure `Pipeline::evaluate`, `calendar::obligations::ics`.
//! All SQL is in `store::web` (and the readers it shares with `audit`).

pub mod admin;
pub mod auditor;
pub mod auth;
pub mod tasks;

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::store::Store;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub use auth::{hash_password, set_password, Role, Viewer};

/// What every page needs: the store, the settings, the live pipeline, the daemon's metrics, the templates.
#[derive(Clone)]
pub struct Web {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Settings,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    templates: minijinja::Environment<'static>,
    /// Passwords checked against their argon2 hash (decoys included) since start: what the sign-in limits bound.
    password_checks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

/// The templates compiled into the binary, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("tasks.html", include_str!("templates/tasks.html")),
    ("feed.html", include_str!("templates/feed.html")),
    ("task.html", include_str!("templates/task.html")),
    ("log.html", include_str!("templates/log.html")),
    ("mail.html", include_str!("templates/mail.html")),
    ("verify.html", include_str!("templates/verify.html")),
    ("quarantine.html", include_str!("templates/quarantine.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("playground.html", include_str!("templates/playground.html")),
    ("mailboxes.html", include_str!("templates/mailboxes.html")),
    ("error.html", include_str!("templates/error.html")),
];

const STYLESHEET: &str = include_str!("static/style.css");

impl Web {
    pub fn new(store: Store, settings: Settings, pipeline: Pipeline, metrics: Arc<Metrics>) -> Web {
        let mut templates = minijinja::Environment::new();
        let overrides = minijinja::path_loader(settings.rules.dir.join("web"));
        templates.set_loader(move |name| {
            if let Some(own) = overrides(name)? {
                return Ok(Some(own));
            }
            Ok(TEMPLATES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (*text).to_owned()))
        });
        Web {
            inner: Arc::new(Inner {
                store,
                settings,
                pipeline,
                metrics,
                templates,
                password_checks: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// How many passwords this web view checked against argon2 (each sign-in that got past the limits).
    pub fn password_checks(&self) -> u64 {
        self.inner
            .password_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_password_check(&self) {
        self.inner
            .password_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Today in the firm's time zone: what "overdue" and "this week" are counted from.
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now()
            .with_timezone(&self.inner.settings.general.timezone)
            .date_naive()
    }

    /// Renders a page; `ctx` is merged with the viewer (for the navigation) when there is one.
    pub fn render(
        &self,
        name: &str,
        viewer: Option<&Viewer>,
        ctx: minijinja::Value,
    ) -> Result<Html<String>, WebError> {
        let template = self
            .inner
            .templates
            .get_template(name)
            .map_err(|e| WebError::Internal(anyhow::anyhow!("template {name}: {e:#}")))?;
        let page = minijinja::context! { viewer => viewer, ..ctx };
        template
            .render(page)
            .map(Html)
            .map_err(|e| WebError::Internal(anyhow::anyhow!("render {name}: {e:#}")))
    }
}

/// Every route of the web view.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(auth::home))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/style.css", get(stylesheet))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/done", post(tasks::done))
        .route("/tasks/{id}/reassign", post(tasks::reassign))
        .route("/tasks/{id}/checklist/{position}", post(tasks::tick))
        .route("/mail/{id}/attachments/{n}", get(tasks::attachment))
        .route("/ics/{file}", get(tasks::ics_feed))
        .route("/me/ics", post(tasks::new_ics_token))
        .route("/me/ics/revoke", post(tasks::revoke_ics_token))
        .route("/log", get(auditor::log))
        .route("/log/export", get(auditor::export))
        .route("/mail/{id}", get(auditor::mail))
        .route("/verify", get(auditor::verify))
        .route("/admin/quarantine", get(admin::quarantine))
        .route("/admin/reprocess/{id}", post(admin::reprocess))
        .route("/admin/rules", get(admin::rules))
        .route(
            "/admin/playground",
            get(admin::playground_form).post(admin::playground),
        )
        .route("/admin/mailboxes", get(admin::mailboxes))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

/// Headers every page of the web view carries: no framing (clickjacking), no scripts or styles from elsewhere,
/// no referrer (a feed link holds a secret), no guessing of content types.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
}

/// Why a request was refused or failed; each becomes a page in Russian with the right status.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in: to the sign-in page.
    SignIn,
    /// Signed in, but this is not for this role or person.
    Forbidden,
    NotFound,
    /// The form was wrong; the text says how (Russian, shown to the person).
    BadRequest(String),
    /// The CSRF token of a form did not match the session's.
    Csrf,
    /// Too many failed sign-ins: the next attempt is possible after this many seconds.
    TooManyAttempts {
        retry_after_secs: u64,
    },
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> WebError {
        WebError::Internal(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            WebError::SignIn => {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
            }
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Нет доступа: эта страница не для вашей роли.".to_owned(),
            ),
            WebError::NotFound => (StatusCode::NOT_FOUND, "Такой страницы нет.".to_owned()),
            WebError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "Форма устарела: обновите страницу и отправьте её ещё раз.".to_owned(),
            ),
            WebError::TooManyAttempts { retry_after_secs } => {
                let text = format!(
                    "Слишком много неудачных попыток входа. Попробуйте ещё раз через {retry_after_secs} с."
                );
                let body = format!(
                    "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>429</title>\
                     <link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main><h1>429</h1>\
                     <p class=\"error\">{}</p><p><a href=\"/login\">Ко входу</a></p></main></body></html>",
                    html_escape(&text)
                );
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after_secs.to_string())],
                    Html(body),
                )
                    .into_response();
            }
            WebError::Internal(e) => {
                tracing::error!("web request failed: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Внутренняя ошибка; она записана в журнал службы.".to_owned(),
                )
            }
        };
        let body = format!(
            "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>{code}</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main><h1>{code}</h1>\
             <p class=\"error\">{}</p><p><a href=\"/\">На главную</a></p></main></body></html>",
            html_escape(&text),
            code = status.as_u16()
        );
        (status, Html(body)).into_response()
    }
}

/// Minimal HTML escaping for the error page, which must render even when the templates cannot.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A file name safe for `Content-Disposition`: no path, no quotes or control characters; non-ASCII kept only in
/// the RFC 5987 `filename*` form.
pub fn content_disposition(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';' | '\\'))
        .take(150)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    let cleaned = if cleaned.is_empty() {
        "attachment.bin".to_owned()
    } else {
        cleaned
    };
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = cleaned
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_lose_paths_quotes_and_control_characters() {
        let h = content_disposition("../../etc/pa\"ss\r\nwd");
        assert_eq!(
            h,
            "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"
        );
        let h = content_disposition("Требование №1.pdf");
        assert!(h.starts_with("attachment; filename=\"__________ _1.pdf\""));
        assert!(h.contains("filename*=UTF-8''%D0%A2"));
        assert_eq!(
            content_disposition(".."),
            "attachment; filename=\"attachment.bin\"; filename*=UTF-8''attachment.bin"
        );
    }

    #[test]
    fn every_embedded_template_compiles() {
        let mut env = minijinja::Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }
}

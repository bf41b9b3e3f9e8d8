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
pub mod feed;
pub mod present;
pub mod tasks;

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::store::Store;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
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
/// The few lines of script the pages use where it helps (copy a link); every page works without it.
const SCRIPT: &str = include_str!("static/app.js");

impl Web {
    pub fn new(store: Store, settings: Settings, pipeline: Pipeline, metrics: Arc<Metrics>) -> Web {
        let mut templates = minijinja::Environment::new();
        templates.add_filter("ru_date", |s: String| present::ru_date(&s));
        templates.add_filter("linkify", |s: String| {
            minijinja::Value::from_safe_string(present::linkify(&s))
        });
        let tz = settings.general.timezone;
        templates.add_filter("ru_time", move |s: String| present::ru_datetime(&s, &tz));
        templates.add_filter("category", |s: String| {
            present::word(&s, present::CATEGORIES)
        });
        templates.add_filter("mail_status", |s: String| {
            present::word(&s, present::MAIL_STATUSES)
        });
        templates.add_filter("log_event", |s: String| {
            present::word(&s, present::LOG_EVENTS)
        });
        templates.add_filter("urlq", |s: String| {
            form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        });
        templates.add_filter("step", |s: String| present::word(&s, present::STEPS));
        templates.add_filter("role", |s: String| present::word(&s, present::ROLES));
        templates.add_filter("task_status", |s: String| {
            present::word(&s, present::TASK_STATUSES)
        });
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
        .route("/static/app.js", get(script))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/done", post(tasks::done))
        .route("/tasks/{id}/reopen", post(tasks::reopen))
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
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            finish_page,
        ))
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

async fn not_found() -> WebError {
    WebError::NotFound
}

/// What an error page says; [`finish_page`] draws it inside the layout, with the menu of whoever is signed in.
#[derive(Debug, Clone)]
struct ErrorPage {
    text: String,
}

/// Every answer passes here: an error (ours, or one of axum's plain-text rejections such as a path that is no
/// number) becomes a Russian page inside the layout, and nothing that is not a static file is kept by a browser
/// or a proxy (`Cache-Control: no-store`: Back after sign-out must not show the list).
async fn finish_page(State(web): State<Web>, request: Request, next: Next) -> Response {
    let headers = request.headers().clone();
    let mut response = next.run(request).await;
    let page = match response.extensions_mut().remove::<ErrorPage>() {
        Some(page) => Some(page),
        None => rejection_page(&mut response),
    };
    if let Some(page) = page {
        response = web.error_response(response.status(), &page, &headers).await;
    }
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// axum's own rejections are plain text in English ("Invalid URL: Cannot parse `abc` to a `i64`"): what each
/// means to a person instead. A path that does not parse names no page, so it is a 404.
fn rejection_page(response: &mut Response) -> Option<ErrorPage> {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return None;
    }
    let text = match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
            *response.status_mut() = StatusCode::NOT_FOUND;
            NOT_FOUND_TEXT
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            "Так эту страницу открыть нельзя: вернитесь назад и воспользуйтесь кнопкой на странице."
        }
        StatusCode::PAYLOAD_TOO_LARGE => "Слишком большой файл или форма.",
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            "Форма заполнена не так: вернитесь назад, проверьте поля и отправьте ещё раз."
        }
        s if s.is_server_error() => INTERNAL_TEXT,
        _ => "Запрос не выполнен.",
    };
    Some(ErrorPage {
        text: text.to_owned(),
    })
}

const NOT_FOUND_TEXT: &str = "Такой страницы нет: проверьте адрес или вернитесь к списку задач.";
const INTERNAL_TEXT: &str = "Внутренняя ошибка; она записана в журнал службы.";

impl Web {
    /// An error page inside the layout, with the menu of the person signed in (if any).
    async fn error_response(
        &self,
        status: StatusCode,
        page: &ErrorPage,
        headers: &HeaderMap,
    ) -> Response {
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts.headers = headers.clone();
        let viewer = Viewer::from_request_parts(&mut parts, self).await.ok();
        let body = self
            .render(
                "error.html",
                viewer.as_ref(),
                minijinja::context! { code => status.as_u16(), text => page.text },
            )
            .map(|h| h.0)
            .unwrap_or_else(|_| bare_error_page(status, &page.text));
        (status, Html(body)).into_response()
    }
}

/// The error page without templates (when even they fail).
fn bare_error_page(status: StatusCode, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>{code}</title>\
         <link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main><h1>{code}</h1>\
         <p class=\"error\">{}</p><p><a href=\"/\">На главную</a></p></main></body></html>",
        html_escape(text),
        code = status.as_u16()
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        SCRIPT,
    )
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
    /// Not signed in while opening this local page: to the sign-in page, and back here after it.
    SignInThen(String),
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
                return (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, "/login".to_owned())],
                )
                    .into_response()
            }
            WebError::SignInThen(next) => {
                let mut q = form_urlencoded::Serializer::for_suffix(
                    String::from("/login?"),
                    "/login?".len(),
                );
                q.append_pair("next", &next);
                return (StatusCode::SEE_OTHER, [(header::LOCATION, q.finish())]).into_response();
            }
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Нет доступа: эта страница не для вашей роли.".to_owned(),
            ),
            WebError::NotFound => (StatusCode::NOT_FOUND, NOT_FOUND_TEXT.to_owned()),
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
                (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_TEXT.to_owned())
            }
        };
        // Drawn without the layout here; `finish_page` draws it again inside it, with the viewer's menu.
        let mut response = (status, Html(bare_error_page(status, &text))).into_response();
        response.extensions_mut().insert(ErrorPage { text });
        response
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

//! The Bitrix24 sink, over an incoming webhook of the portal (`https://<portal>/rest/<user>/<code>/`; the code is
//! a secret, read from `url_env`/`url_file` and never logged). Requests run with the rights of the webhook's
//! owner, so the webhook should belong to a long-lived integration user: a new owner sees none of the earlier
//! tasks (they are then handled as lost, below).
//!
//! **Events.** `created` adds a task (`tasks.task.add`: TITLE cut to the portal's 255 characters on a word
//! boundary, DESCRIPTION with a link back to the web view when `[web] base_url` is set, RESPONSIBLE_ID, DEADLINE,
//! XML_ID, the assignee's manager as AUDITORS and the client's backup accountant as ACCOMPLICES, TAGS by demand
//! kind, UF_CRM_TASK bound to the client's company found by INN with `crm.requisite.list` when the webhook has
//! scope `crm`), then sends the demand's checklist (`task.checklistitem.add`; none when the task carries none) and
//! attaches the original mail and its XML (`disk.folder.uploadfile` into `attachments_folder` +
//! `tasks.task.files.attach`, scope `disk`); these extras are best-effort, logged when they fail. `linked`,
//! `escalated` and `reassigned` update only what taxinbox owns (`tasks.task.update`): taxinbox's block of the
//! description (read first with `tasks.task.get`; what an accountant wrote after it is kept, and a description
//! whose block was edited away is left alone), DEADLINE only when the legal deadline changed since it was last
//! sent, PRIORITY on an escalation, RESPONSIBLE_ID on a reassignment; never TITLE. `done` completes the task
//! (`tasks.task.complete`; status 5, or 4 "awaiting control" when the task has a controller: both count as done);
//! `reopened` (a person's undo of done) renews it (`tasks.task.renew`, back to status 2).
//! An event for a task that has no Bitrix24 task yet (the sink was configured later) adds it with the state of now.
//!
//! **People.** An accountant's Bitrix24 user is the static map's (`[sinks.responsible]`, an override) or, when the
//! webhook has scope `user_basic`, the active user with that e-mail (`user.get` by EMAIL, cached in the store and
//! refreshed daily by `notify::sink`); else `default_responsible`.
//!
//! **Never a second task.** `tasks.task.add` is not idempotent, and taxinbox may die after Bitrix24 created the task
//! but before the id is stored. Every task carries its marker in `XML_ID` (a field the core filters on exactly and
//! that no title length cuts off); before adding, the sink asks `tasks.task.list` for it and adopts a task found.
//!
//! **Lost tasks.** A task deleted on the portal (it goes to the recycle bin) or invisible to the webhook's owner
//! answers `tasks.task.get` with an empty result and refuses updates with error `"0"`. The event is then delivered
//! as [`Delivered::lost`]: `notify::sink` records it (shown by `taxinbox sinks status`) and, by `on_lost_task`,
//! the task is added again or its later events are not sent; the queue never waits for it.
//!
//! **Limits.** Every request first takes a token of the portal's [`Pacer`] (the documented 2 requests/s, burst 50;
//! configurable for Enterprise). A 503 `QUERY_LIMIT_EXCEEDED` empties the bucket and is asked again after the
//! refill, a few times; then, like a 429 `OPERATION_TIME_LIMIT` (the method is blocked until the oldest minute of
//! its 10-minute window expires: `operating_reset_at` of the last answer, else 10 minutes) and a 401
//! `NO_AUTH_FOUND`, the event waits ([`SinkError::Wait`]) without using up an attempt.

use super::sink::{post_json, status_error, SinkError};
use super::{client_label, russian_date};
use crate::settings::{OnLostTask, PortalSettings};
use crate::store::{
    PendingSinkEvent, SinkPeople, SinkTask, TaskChange, EVENT_CREATED, EVENT_DONE, EVENT_ESCALATED,
    EVENT_REASSIGNED, EVENT_REOPENED,
};
use chrono::{NaiveDate, TimeZone as _};
use secrecy::{ExposeSecret as _, SecretString};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Bitrix24's priority "high" (0 low, 1 normal, 2 high).
const PRIORITY_HIGH: u8 = 2;

/// Bitrix24's task statuses that mean the work is done, as `tasks.task.get` writes them: 5 completed, 4 awaiting
/// control (completed by the responsible of a task with a controller; the controller accepts it in Bitrix24).
const STATUSES_DONE: [&str; 2] = ["5", "4"];

/// Bitrix24's error code for "too many requests" (HTTP 503): the portal's request counter is above its limit.
const QUERY_LIMIT_EXCEEDED: &str = "QUERY_LIMIT_EXCEEDED";

/// Bitrix24's error code for "the method is blocked" (HTTP 429): its execution time in the last 10 minutes is
/// above the limit.
const OPERATION_TIME_LIMIT: &str = "OPERATION_TIME_LIMIT";

/// Bitrix24's error code for a refused webhook (HTTP 401): wrong code, or its owner was deactivated.
const NO_AUTH_FOUND: &str = "NO_AUTH_FOUND";

/// How often one request is asked again after a 503 before its event waits: at the documented pace that is a few
/// seconds, enough for the portal's counter to drain below its limit unless another application keeps it full.
const MAX_LIMIT_ROUNDS: u32 = 8;

/// How long an event waits after the 503s of [`MAX_LIMIT_ROUNDS`] rounds.
const LIMIT_WAIT: Duration = Duration::from_secs(30);

/// How long a method stays blocked after a 429 when the last answer named no reset time: the documentation's
/// "the block lifts automatically after 10 minutes".
const TIME_LIMIT_WAIT: Duration = Duration::from_secs(600);

/// How long events wait after the portal refused the webhook (401): an admin has to act.
const AUTH_WAIT: Duration = Duration::from_secs(900);

/// The portal's fixed page size of list methods (`tasks.task.list`, `user.get`, `crm.requisite.list`).
const PAGE: usize = 50;

/// The most pages one lookup reads: a bound on the loop (2,500 users or tasks).
const MAX_PAGES: usize = 50;

/// The length of TITLE in the core (`varchar(255)`), in characters.
const MAX_TITLE_CHARS: usize = 255;

/// The marker of our task in `XML_ID`: how a task created by an attempt whose answer was lost is found again.
/// Its closing bracket keeps the markers of #12 and #123 apart even for a substring search.
pub fn marker(task: i64) -> String {
    format!("(taxinbox #{task})")
}

/// The request pace of one portal: a token bucket refilled at the portal's documented rate, as deep as its burst,
/// so the portal's own counter (a leaky bucket of the same size and rate) never overflows from our requests.
#[derive(Debug)]
pub struct Pacer {
    per_second: f64,
    burst: f64,
    state: Mutex<PaceState>,
}

#[derive(Debug)]
struct PaceState {
    /// Tokens now; negative while requests wait for tokens they reserved.
    tokens: f64,
    at: Instant,
    /// `operating_reset_at` of the last answer (Unix seconds): when a blocked method is free again.
    reset_at: Option<i64>,
}

impl Pacer {
    /// A full bucket of `burst` tokens refilled at `per_second`.
    pub fn new(per_second: u32, burst: u32) -> Pacer {
        Pacer {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            state: Mutex::new(PaceState {
                tokens: f64::from(burst.max(1)),
                at: Instant::now(),
                reset_at: None,
            }),
        }
    }

    /// Waits for a token (reserved at once, so concurrent callers queue fairly).
    pub async fn take(&self) {
        let wait = {
            let mut s = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let refill = now.duration_since(s.at).as_secs_f64() * self.per_second;
            s.tokens = (s.tokens + refill).min(self.burst);
            s.at = now;
            s.tokens -= 1.0;
            if s.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.tokens / self.per_second)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The portal said its counter is full (503): no token until the refill.
    fn drain(&self) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.tokens = s.tokens.min(0.0);
    }

    fn note_reset(&self, at: Option<i64>) {
        if let Some(at) = at {
            self.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reset_at = Some(at);
        }
    }

    /// How long a method blocked by a 429 stays blocked.
    fn time_limit_wait(&self) -> Duration {
        let reset_at = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reset_at;
        let now = chrono::Utc::now().timestamp();
        match reset_at {
            Some(at) if at > now => Duration::from_secs((at - now).unsigned_abs())
                .clamp(Duration::from_secs(1), TIME_LIMIT_WAIT),
            _ => TIME_LIMIT_WAIT,
        }
    }
}

/// The pacer of the portal at `origin`, shared by every sink and pass of this process: the portal's counter
/// outlives a pass, and two sinks on one portal share its limit.
pub fn pacer(origin: &str, settings: &PortalSettings) -> Arc<Pacer> {
    /// A portal's origin and its configured pace.
    type Key = (String, u32, u32);
    static PACERS: LazyLock<Mutex<BTreeMap<Key, Arc<Pacer>>>> =
        LazyLock::new(|| Mutex::new(BTreeMap::new()));
    let key = (
        origin.to_owned(),
        settings.requests_per_second,
        settings.burst,
    );
    PACERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(|| Arc::new(Pacer::new(settings.requests_per_second, settings.burst)))
        .clone()
}

/// The origin (`https://host:port`) of a webhook URL: the key of its portal's pace.
pub fn origin(base: &SecretString) -> String {
    reqwest::Url::parse(base.expose_secret())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// A Bitrix24 portal as one delivery (or `sinks check`) uses it.
#[derive(Debug, Clone, Copy)]
pub struct Portal<'a> {
    pub client: &'a reqwest::Client,
    /// The incoming-webhook URL (holds the code).
    pub base: &'a SecretString,
    pub pacer: &'a Pacer,
}

/// One call of the REST API: POST `<base>/<method>.json` with a JSON body; the whole answer on success.
async fn call_answer(
    portal: Portal<'_>,
    method: &str,
    params: &serde_json::Value,
) -> Result<serde_json::Value, SinkError> {
    let url = format!(
        "{}/{method}.json",
        portal.base.expose_secret().trim_end_matches('/')
    );
    for _ in 0..MAX_LIMIT_ROUNDS {
        portal.pacer.take().await;
        let (status, text, json) = post_json(portal.client, &url, params).await?;
        let code = json.get("error").and_then(|e| match e {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let Some(code) = code else {
            if !status.is_success() {
                return Err(match status_error(status, &text) {
                    SinkError::Permanent(m) => SinkError::Permanent(format!("{method}: {m}")),
                    SinkError::Transient(m) => SinkError::Transient(format!("{method}: {m}")),
                    SinkError::Wait { message, wait } => SinkError::Wait {
                        message: format!("{method}: {message}"),
                        wait,
                    },
                });
            }
            portal.pacer.note_reset(
                json.get("time")
                    .and_then(|t| t.get("operating_reset_at"))
                    .and_then(serde_json::Value::as_f64)
                    .map(|f| f as i64),
            );
            return Ok(json);
        };
        let description = json
            .get("error_description")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        let message = format!("{method}: {code}: {description} (HTTP {})", status.as_u16());
        match code.as_str() {
            QUERY_LIMIT_EXCEEDED => {
                tracing::debug!(method, "Bitrix24 answered QUERY_LIMIT_EXCEEDED; asking again after the refill");
                portal.pacer.drain();
                continue;
            }
            OPERATION_TIME_LIMIT => {
                return Err(SinkError::Wait {
                    message,
                    wait: portal.pacer.time_limit_wait(),
                })
            }
            NO_AUTH_FOUND => {
                return Err(SinkError::Wait {
                    message: format!(
                        "{message}: the portal refuses the webhook (code regenerated or its owner deactivated?)"
                    ),
                    wait: AUTH_WAIT,
                })
            }
            _ if status.is_server_error() => return Err(SinkError::Transient(message)),
            _ => return Err(SinkError::Permanent(message)),
        }
    }
    Err(SinkError::Wait {
        message: format!("{method}: {QUERY_LIMIT_EXCEEDED} {MAX_LIMIT_ROUNDS} times in a row (another application may share the portal's limit)"),
        wait: LIMIT_WAIT,
    })
}

/// One call; its `result`.
async fn call(
    portal: Portal<'_>,
    method: &str,
    params: &serde_json::Value,
) -> Result<serde_json::Value, SinkError> {
    let answer = call_answer(portal, method, params).await?;
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| SinkError::Transient(format!("{method}: the answer holds no result")))
}

/// Every row of a list method, page after page of [`PAGE`] (bounded by [`MAX_PAGES`]); `rows` picks a page's rows
/// out of its `result`.
async fn list_all(
    portal: Portal<'_>,
    method: &str,
    params: serde_json::Value,
    rows: fn(&serde_json::Value) -> Vec<serde_json::Value>,
) -> Result<Vec<serde_json::Value>, SinkError> {
    let mut all = Vec::new();
    for page in 0..MAX_PAGES {
        let mut params = params.clone();
        params["start"] = serde_json::Value::from(page * PAGE);
        let answer = call_answer(portal, method, &params).await?;
        let got = answer.get("result").map(rows).unwrap_or_default();
        let n = got.len();
        all.extend(got);
        // `next` is present while there are more rows.
        if n < PAGE || answer.get("next").is_none() {
            break;
        }
    }
    Ok(all)
}

/// An id as Bitrix24 writes it: a string or a number.
fn id_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn array_rows(result: &serde_json::Value) -> Vec<serde_json::Value> {
    result.as_array().cloned().unwrap_or_default()
}

fn task_rows(result: &serde_json::Value) -> Vec<serde_json::Value> {
    result
        .get("tasks")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default()
}

/// The webhook's scopes (`scope`).
pub async fn scopes(portal: Portal<'_>) -> Result<BTreeSet<String>, SinkError> {
    let result = call(portal, "scope", &serde_json::json!({})).await?;
    Ok(result
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Whether the scopes allow `user.get`.
pub fn can_read_users(scopes: &BTreeSet<String>) -> bool {
    ["user", "user_basic", "user_brief"]
        .iter()
        .any(|s| scopes.contains(*s))
}

/// The active users with these e-mails (`user.get` by EMAIL, `ACTIVE`), lower-case e-mail → user id.
pub async fn users_by_email(
    portal: Portal<'_>,
    emails: &[String],
) -> Result<BTreeMap<String, u64>, SinkError> {
    let mut found = BTreeMap::new();
    for chunk in emails.chunks(PAGE) {
        let rows = list_all(
            portal,
            "user.get",
            serde_json::json!({"FILTER": {"EMAIL": chunk, "ACTIVE": true}}),
            array_rows,
        )
        .await?;
        for user in rows {
            let email = user
                .get("EMAIL")
                .and_then(|e| e.as_str())
                .unwrap_or_default()
                .trim()
                .to_lowercase();
            let active = user.get("ACTIVE").is_none_or(|a| {
                a.as_bool().unwrap_or(false) || a.as_str() == Some("Y") || a.as_str() == Some("1")
            });
            let id = user
                .get("ID")
                .and_then(id_of)
                .and_then(|i| i.parse::<u64>().ok());
            if let (true, Some(id)) = (active && !email.is_empty(), id) {
                found.entry(email).or_insert(id);
            }
        }
    }
    Ok(found)
}

/// The Bitrix24 task carrying our marker in XML_ID, if the webhook's owner can see one.
async fn find(portal: Portal<'_>, task: i64) -> Result<Option<String>, SinkError> {
    let marker = marker(task);
    let tasks = list_all(
        portal,
        "tasks.task.list",
        serde_json::json!({"filter": {"XML_ID": marker}, "select": ["ID", "XML_ID"]}),
        task_rows,
    )
    .await?;
    // The filter is exact; checked again so a quirk of the portal cannot adopt a stranger's task.
    Ok(tasks
        .iter()
        .filter(|t| t.get("xmlId").and_then(|x| x.as_str()) == Some(marker.as_str()))
        .find_map(|t| t.get("id").and_then(id_of)))
}

/// The task as `tasks.task.get` shows it; `None` when it does not exist (deleted: in the recycle bin) or the
/// webhook's owner has no access: the portal answers an empty result to both.
async fn get(
    portal: Portal<'_>,
    id: &str,
    select: &[&str],
) -> Result<Option<serde_json::Value>, SinkError> {
    let result = call(
        portal,
        "tasks.task.get",
        &serde_json::json!({"taskId": id, "select": select}),
    )
    .await?;
    Ok(result.get("task").filter(|t| t.is_object()).cloned())
}

/// Why a task is taken as lost.
fn lost_reason(id: &str, refused: Option<&str>) -> String {
    let mut reason = format!(
        "Bitrix24 task {id} is deleted (recycle bin) or not visible to the webhook's owner"
    );
    if let Some(refused) = refused {
        reason.push_str(&format!(" ({refused})"));
    }
    reason
}

/// Completes the Bitrix24 task `id`; `Ok(Err(reason))` when the task is lost. A repeat (the first answer was lost)
/// may be refused, the task being done already: that refusal is success once `tasks.task.get` confirms it.
async fn complete(portal: Portal<'_>, id: &str) -> Result<Result<(), String>, SinkError> {
    change_status(portal, "tasks.task.complete", id, true).await
}

/// Renews (reopens) the completed Bitrix24 task `id` (`tasks.task.renew`); `Ok(Err(reason))` when the task is lost.
/// The portal refuses to renew a task that is not completed, with the same error as for a task it cannot see: a
/// repeat (the first answer was lost) or a task someone reopened there already is success once `tasks.task.get`
/// shows it open.
async fn renew(portal: Portal<'_>, id: &str) -> Result<Result<(), String>, SinkError> {
    change_status(portal, "tasks.task.renew", id, false).await
}

/// Calls `method` on task `id` to make it done (`done`) or open; a refusal is read against the task's status
/// (`tasks.task.get`): already in the wanted state is success, a task no longer there is lost.
async fn change_status(
    portal: Portal<'_>,
    method: &str,
    id: &str,
    done: bool,
) -> Result<Result<(), String>, SinkError> {
    let refused = match call(portal, method, &serde_json::json!({"taskId": id})).await {
        Ok(_) => return Ok(Ok(())),
        Err(SinkError::Permanent(m)) => m,
        Err(e) => return Err(e),
    };
    let Some(task) = get(portal, id, &["ID", "STATUS"]).await? else {
        return Ok(Err(lost_reason(id, Some(&refused))));
    };
    let status = task.get("status").and_then(id_of);
    if status.is_some_and(|s| STATUSES_DONE.contains(&s.as_str()) == done) {
        Ok(Ok(()))
    } else {
        Err(SinkError::Permanent(refused))
    }
}

/// End of the due day in the firm's zone, as Bitrix24 reads a deadline.
pub fn deadline(due: &str, zone: chrono_tz::Tz) -> Option<String> {
    let day = NaiveDate::parse_from_str(due, "%Y-%m-%d").ok()?;
    let end = day.and_hms_opt(23, 59, 59)?;
    let at = zone.from_local_datetime(&end).earliest()?;
    Some(at.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

/// `text` cut to `max` characters on a word boundary (with an ellipsis), or as it is when it fits.
pub fn cut_title(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let room: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match room.rfind(char::is_whitespace) {
        // A word boundary not too far back; otherwise cut inside the (very long) word.
        Some(at) if room[..at].chars().count() > max / 2 => &room[..at],
        _ => room.as_str(),
    };
    format!(
        "{}…",
        cut.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == '—')
    )
}

/// Where a deadline comes from, in words.
fn provenance_text(p: &serde_json::Value) -> String {
    let s = |key: &str| p.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    match s("from") {
        "" if s("source") == "tax_calendar" => format!(
            "налоговый календарь: {} за {}{}",
            s("event"),
            s("period"),
            if s("law").is_empty() {
                String::new()
            } else {
                format!(" ({})", s("law"))
            }
        ),
        "" => "—".to_owned(),
        "rule" => format!("дата из правила: {}", russian_date(s("base"))),
        from => {
            let days = p
                .get("working_days")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            format!(
                "{days} раб. дн. от {} ({from}), календарь {}",
                russian_date(s("base")),
                s("calendar")
            )
        }
    }
}

/// The tag of a demand kind (or of a tax-calendar task), as accountants filter by it in Bitrix24.
fn kind_tag(task: &SinkTask) -> Option<&'static str> {
    if task.event.is_some() {
        return Some("налоговый календарь");
    }
    Some(match task.kind.as_deref()? {
        "documents" => "требование документов",
        "counterparty_documents" => "документы по контрагенту",
        "explanations" => "пояснения",
        "payment" => "требование об уплате",
        "summons" => "вызов в инспекцию",
        "freeze" => "блокировка счёта",
        "other" => "требование",
        _ => return None,
    })
}

/// Who the Bitrix24 task names, as Bitrix24 users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct People {
    /// Lower-case e-mail → Bitrix24 user id: the static map over the users found by e-mail.
    pub by_email: BTreeMap<String, u64>,
    /// The user of tasks whose assignee is not mapped.
    pub default: u64,
}

impl People {
    fn user(&self, email: Option<&str>) -> Option<u64> {
        email.and_then(|e| self.by_email.get(&e.trim().to_lowercase()).copied())
    }
}

/// What taxinbox writes into a task beyond the store's task.
#[derive(Debug, Clone, Default)]
pub struct Extras<'a> {
    /// The assignee's manager and the client's backup accountant.
    pub people: SinkPeople,
    /// The web view's base URL (`[web] base_url`), for the link back.
    pub web_base: Option<&'a str>,
    /// The demand's checklist of requested documents (on its answer task; empty: no checklist).
    pub checklist: Vec<String>,
    /// The original mail (raw bytes), for the attachments.
    pub raw_mail: Option<Vec<u8>>,
}

/// The last line of taxinbox's block of the description: what follows it is the accountant's.
fn block_end(task: i64) -> String {
    format!("taxinbox, задача #{task}")
}

/// taxinbox's block of the description, for our task as it stands now.
fn description(task: &SinkTask, people: &People, extras: &Extras<'_>, escalated: bool) -> String {
    let client = client_label(task.client_name.as_deref(), task.client_inn.as_deref());
    let mapped = people.user(task.assignee.as_deref());
    let mut lines = vec![
        format!("Клиент: {client}"),
        format!("Что сделать: {} (шаг: {})", task.title, task.step),
        format!(
            "Срок: {} — {}",
            russian_date(&task.due),
            provenance_text(&task.provenance)
        ),
    ];
    if let Some(mail) = &task.mail {
        lines.push(format!(
            "Письмо: «{}» от {}, получено {}",
            mail.subject,
            mail.from,
            russian_date(&mail.received)
        ));
    }
    for mail in &task.linked_mail {
        lines.push(format!(
            "Ещё письмо по делу: «{}» от {}, получено {}",
            mail.subject,
            mail.from,
            russian_date(&mail.received)
        ));
    }
    match (&task.assignee, mapped) {
        (Some(who), Some(_)) => lines.push(format!("Исполнитель в taxinbox: {who}")),
        (Some(who), None) => lines.push(format!(
            "Исполнитель в taxinbox: {who} — нет в списке пользователей Битрикс24, задача поставлена ответственному по умолчанию"
        )),
        (None, _) => lines.push(
            "Исполнитель в taxinbox не назначен — задача поставлена ответственному по умолчанию"
                .to_owned(),
        ),
    }
    if escalated {
        lines.push("Срок близко, задача не закрыта (эскалация).".to_owned());
    }
    if let Some(base) = extras.web_base {
        lines.push(format!(
            "Задача в taxinbox: {}/tasks/{}",
            base.trim_end_matches('/'),
            task.id
        ));
    }
    lines.push(block_end(task.id));
    lines.join("\n")
}

/// The description with taxinbox's block replaced by `ours` and the accountant's text after it kept; `None` when
/// nothing changes or the block is no longer there (an accountant rewrote the description: left alone).
fn merged_description(current: &str, ours: &str, task: i64) -> Option<String> {
    let end = block_end(task);
    let at = current.find(&end)?;
    let tail = &current[at + end.len()..];
    let merged = format!("{ours}{tail}");
    (merged != current).then_some(merged)
}

/// The fields of a new Bitrix24 task for our task as it stands now (`company`: `CO_<id>` of the client's company).
pub fn fields(
    task: &SinkTask,
    people: &People,
    extras: &Extras<'_>,
    zone: chrono_tz::Tz,
    escalated: bool,
    company: Option<&str>,
) -> serde_json::Value {
    let client = client_label(task.client_name.as_deref(), task.client_inn.as_deref());
    let responsible = people
        .user(task.assignee.as_deref())
        .unwrap_or(people.default);
    let mut fields = serde_json::json!({
        "TITLE": cut_title(&format!("{} — {client}", task.title), MAX_TITLE_CHARS),
        "DESCRIPTION": description(task, people, extras, escalated),
        "RESPONSIBLE_ID": responsible,
        "XML_ID": marker(task.id),
    });
    if let Some(deadline) = deadline(&task.due, zone) {
        fields["DEADLINE"] = serde_json::Value::String(deadline);
    }
    if escalated {
        fields["PRIORITY"] = serde_json::Value::from(PRIORITY_HIGH);
    }
    let manager = people
        .user(extras.people.manager.as_deref())
        .filter(|m| *m != responsible);
    if let Some(manager) = manager {
        fields["AUDITORS"] = serde_json::json!([manager]);
    }
    if let Some(substitute) = people
        .user(extras.people.substitute.as_deref())
        .filter(|s| *s != responsible && Some(*s) != manager)
    {
        fields["ACCOMPLICES"] = serde_json::json!([substitute]);
    }
    let mut tags = vec!["taxinbox"];
    tags.extend(kind_tag(task));
    fields["TAGS"] = serde_json::json!(tags);
    if let Some(company) = company {
        fields["UF_CRM_TASK"] = serde_json::json!([company]);
    }
    fields
}

/// The client's company in the portal's CRM, found by its INN among the companies' requisites (`CO_<id>`).
async fn company(portal: Portal<'_>, inn: &str) -> Result<Option<String>, SinkError> {
    // ENTITY_TYPE_ID 4: a company.
    let result = call(
        portal,
        "crm.requisite.list",
        &serde_json::json!({"filter": {"RQ_INN": inn, "ENTITY_TYPE_ID": 4}, "select": ["ENTITY_ID"]}),
    )
    .await?;
    Ok(result
        .as_array()
        .and_then(|rows| rows.iter().find_map(|r| r.get("ENTITY_ID").and_then(id_of)))
        .map(|id| format!("CO_{id}")))
}

/// The files of a task's mail: the mail itself (`.eml`) and its XML attachments.
fn mail_files(task: &SinkTask, raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let id = task.mail.as_ref().map_or(0, |m| m.id);
    let mut files = vec![(format!("taxinbox-{id}.eml"), raw.to_vec())];
    if let Ok(parsed) = crate::mail::parse::parse(raw) {
        for (n, a) in parsed.attachments.iter().enumerate() {
            let is_xml = a.mime.ends_with("/xml") || a.name.to_lowercase().ends_with(".xml");
            if let (true, Some(text)) = (is_xml, &a.text) {
                // The name as sent is untrusted: only its safe characters are kept.
                let safe: String = a
                    .name
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .collect();
                let name = if safe.to_lowercase().ends_with(".xml") {
                    safe
                } else {
                    format!("taxinbox-{id}-{n}.xml")
                };
                files.push((name, text.as_bytes().to_vec()));
            }
        }
    }
    files
}

/// What the new task gets after `tasks.task.add`: the checklist and the attachments. Best-effort: the task exists,
/// so a failure here is logged and the event still delivered.
async fn after_add(
    portal: Portal<'_>,
    id: &str,
    task: &SinkTask,
    extras: &Extras<'_>,
    settings: &PortalSettings,
    scopes: &BTreeSet<String>,
) {
    if !extras.checklist.is_empty() {
        if let Err(e) = checklist(portal, id, &extras.checklist).await {
            tracing::warn!(task_id = task.id, "Bitrix24 checklist not sent: {e}");
        }
    }
    if let (Some(folder), Some(raw), true) = (
        settings.attachments_folder,
        extras.raw_mail.as_deref(),
        scopes.contains("disk"),
    ) {
        for (name, bytes) in mail_files(task, raw) {
            if let Err(e) = attach(portal, id, folder, &name, &bytes).await {
                tracing::warn!(task_id = task.id, file = %name, "Bitrix24 attachment not sent: {e}");
            }
        }
    }
}

/// The demand's checklist: one checklist (`PARENT_ID` 0 names it) with an item per requested document.
async fn checklist(portal: Portal<'_>, id: &str, items: &[String]) -> Result<(), SinkError> {
    let list = call(
        portal,
        "task.checklistitem.add",
        &serde_json::json!({"TASKID": id, "FIELDS": {"TITLE": "Документы по требованию", "PARENT_ID": 0}}),
    )
    .await?;
    let parent = id_of(&list).unwrap_or_else(|| "0".to_owned());
    for (n, item) in items.iter().enumerate() {
        call(
            portal,
            "task.checklistitem.add",
            &serde_json::json!({"TASKID": id, "FIELDS": {
                "TITLE": item, "PARENT_ID": parent, "SORT_INDEX": (n + 1) * 10, "IS_COMPLETE": "N"}}),
        )
        .await?;
    }
    Ok(())
}

/// Uploads a file into the Drive folder and attaches it to the task.
async fn attach(
    portal: Portal<'_>,
    id: &str,
    folder: u64,
    name: &str,
    bytes: &[u8],
) -> Result<(), SinkError> {
    use base64::Engine as _;
    let file = call(
        portal,
        "disk.folder.uploadfile",
        &serde_json::json!({"id": folder, "data": {"NAME": name},
            "fileContent": [name, base64::engine::general_purpose::STANDARD.encode(bytes)],
            "generateUniqueName": true}),
    )
    .await?;
    let file_id = file.get("ID").and_then(id_of).ok_or_else(|| {
        SinkError::Transient("disk.folder.uploadfile: the answer holds no file id".to_owned())
    })?;
    call(
        portal,
        "tasks.task.files.attach",
        &serde_json::json!({"taskId": id, "fileId": file_id}),
    )
    .await?;
    Ok(())
}

/// What the sink knows of our task's Bitrix24 task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    /// The deadline (ISO date) last sent, when recorded.
    pub due: Option<String>,
}

/// A Bitrix24 task that was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub remote_id: String,
    pub reason: String,
}

/// What a delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The Bitrix24 task id now (`None`: the lost task was dropped).
    pub id: Option<String>,
    /// The deadline sent (to record), when one was.
    pub due: Option<String>,
    /// The task the event found lost.
    pub lost: Option<Lost>,
}

/// Everything one delivery needs besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub portal: Portal<'a>,
    pub people: &'a People,
    pub settings: &'a PortalSettings,
    pub scopes: &'a BTreeSet<String>,
    /// The firm's zone, for deadlines.
    pub zone: chrono_tz::Tz,
}

/// Adds the task with the state of now (and completes it for `done`); returns its id.
async fn add(
    d: Delivery<'_>,
    event: &PendingSinkEvent,
    task: &SinkTask,
    extras: &Extras<'_>,
) -> Result<String, SinkError> {
    let escalated = event.event == EVENT_ESCALATED;
    let company = match (&task.client_inn, d.scopes.contains("crm")) {
        (Some(inn), true) => match company(d.portal, inn).await {
            Ok(c) => c,
            Err(e @ SinkError::Wait { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(task_id = task.id, "no CRM company looked up: {e}");
                None
            }
        },
        _ => None,
    };
    let result = call(
        d.portal,
        "tasks.task.add",
        &serde_json::json!({"fields": fields(task, d.people, extras, d.zone, escalated, company.as_deref())}),
    )
    .await?;
    let id = result
        .get("task")
        .and_then(|t| t.get("id"))
        .and_then(id_of)
        .ok_or_else(|| {
            SinkError::Transient("tasks.task.add: the answer holds no task id".to_owned())
        })?;
    after_add(d.portal, &id, task, extras, d.settings, d.scopes).await;
    if event.event == EVENT_DONE {
        // Should this fail, the retry finds the task just added by its marker and completes it.
        if let Err(reason) = complete(d.portal, &id).await? {
            return Err(SinkError::Transient(reason));
        }
    }
    Ok(id)
}

/// Updates what taxinbox owns of the task `known`; `Ok(Err(reason))` when the task is lost.
async fn update(
    d: Delivery<'_>,
    event: &PendingSinkEvent,
    task: &SinkTask,
    change: Option<&TaskChange>,
    known: &Known,
    extras: &Extras<'_>,
) -> Result<Result<Option<String>, String>, SinkError> {
    let Some(current) = get(d.portal, &known.id, &["ID", "DESCRIPTION"]).await? else {
        return Ok(Err(lost_reason(&known.id, None)));
    };
    let mut task = task.clone();
    let mut update = serde_json::Map::new();
    if event.event == EVENT_REASSIGNED {
        // The assignee of this change (a later one has its own event).
        if let Some(change) = change {
            task.assignee = change.assignee.clone();
        }
        let responsible = d
            .people
            .user(task.assignee.as_deref())
            .unwrap_or(d.people.default);
        update.insert("RESPONSIBLE_ID".into(), responsible.into());
    }
    let escalated = event.event == EVENT_ESCALATED;
    if escalated {
        update.insert("PRIORITY".into(), PRIORITY_HIGH.into());
    }
    let ours = description(&task, d.people, extras, escalated);
    let text = current
        .get("description")
        .and_then(|x| x.as_str())
        .unwrap_or_default();
    match merged_description(text, &ours, task.id) {
        Some(merged) => {
            update.insert("DESCRIPTION".into(), merged.into());
        }
        None if !text.contains(&block_end(task.id)) => tracing::info!(
            task_id = task.id,
            "the Bitrix24 description was rewritten there; taxinbox's lines are not put back"
        ),
        None => {}
    }
    let mut due = None;
    if known.due.as_deref() != Some(task.due.as_str()) {
        if let Some(deadline) = deadline(&task.due, d.zone) {
            update.insert("DEADLINE".into(), deadline.into());
            due = Some(task.due.clone());
        }
    }
    if update.is_empty() {
        return Ok(Ok(due));
    }
    match call(
        d.portal,
        "tasks.task.update",
        &serde_json::json!({"taskId": known.id, "fields": update}),
    )
    .await
    {
        Ok(_) => Ok(Ok(due)),
        Err(SinkError::Permanent(refused)) => match get(d.portal, &known.id, &["ID"]).await? {
            None => Ok(Err(lost_reason(&known.id, Some(&refused)))),
            Some(_) => Err(SinkError::Permanent(refused)),
        },
        Err(e) => Err(e),
    }
}

/// Delivers one event (`change`: what a person changed, for `done` and `reassigned`; `known`: the Bitrix24 task
/// stored so far).
pub async fn deliver(
    d: Delivery<'_>,
    event: &PendingSinkEvent,
    task: &SinkTask,
    change: Option<&TaskChange>,
    known: Option<Known>,
    extras: &Extras<'_>,
) -> Result<Delivered, SinkError> {
    let known = match known {
        Some(k) => Some(k),
        None => find(d.portal, task.id)
            .await?
            .map(|id| Known { id, due: None }),
    };
    let Some(known) = known else {
        // No task yet (the `created` event, or a sink configured after the task was created): add it, with the
        // state of now, which already includes any linked mail, escalation and reassignment.
        let id = add(d, event, task, extras).await?;
        return Ok(Delivered {
            id: Some(id),
            due: Some(task.due.clone()),
            lost: None,
        });
    };
    let outcome = if event.event == EVENT_CREATED {
        // Adopted after a lost answer: it was added with this deadline.
        return Ok(Delivered {
            due: Some(known.due.unwrap_or_else(|| task.due.clone())),
            id: Some(known.id),
            lost: None,
        });
    } else if event.event == EVENT_DONE {
        complete(d.portal, &known.id).await?.map(|()| None)
    } else if event.event == EVENT_REOPENED {
        renew(d.portal, &known.id).await?.map(|()| None)
    } else {
        update(d, event, task, change, &known, extras).await?
    };
    match outcome {
        Ok(due) => Ok(Delivered {
            id: Some(known.id),
            due,
            lost: None,
        }),
        Err(reason) => {
            let lost = Lost {
                remote_id: known.id,
                reason,
            };
            match d.settings.on_lost_task {
                OnLostTask::Drop => Ok(Delivered {
                    id: None,
                    due: None,
                    lost: Some(lost),
                }),
                OnLostTask::Recreate => {
                    let id = add(d, event, task, extras).await?;
                    Ok(Delivered {
                        id: Some(id),
                        due: Some(task.due.clone()),
                        lost: Some(lost),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_end_of_the_due_day_in_the_firms_zone() {
        assert_eq!(
            deadline("2026-03-12", chrono_tz::Europe::Moscow).as_deref(),
            Some("2026-03-12T23:59:59+03:00")
        );
        assert_eq!(deadline("12.03.2026", chrono_tz::Europe::Moscow), None);
    }

    #[test]
    fn markers_of_different_tasks_never_contain_each_other() {
        assert!(!marker(123).contains(&marker(12)));
    }

    #[test]
    fn a_long_title_is_cut_on_a_word_boundary_within_255_characters() {
        let name = format!(
            "ООО «{}»",
            "Северо-Западная Промышленная Компания ".repeat(8)
        );
        let title = cut_title(&format!("Ответить на требование — {name}"), 255);
        assert!(title.chars().count() <= 255, "{}", title.chars().count());
        assert!(title.ends_with('…'));
        let kept = title.trim_end_matches('…');
        assert!(
            format!("Ответить на требование — {name}").starts_with(kept)
                && !kept.ends_with("Северо-"),
            "{title}"
        );
        assert_eq!(cut_title("коротко", 255), "коротко");
    }

    #[test]
    fn an_update_keeps_what_the_accountant_wrote_after_taxinboxs_block() {
        let old = format!("Клиент: А\n{}\nПозвонила клиенту, ждём акт.", block_end(7));
        let ours = format!("Клиент: А\nЕщё письмо по делу\n{}", block_end(7));
        assert_eq!(
            merged_description(&old, &ours, 7).as_deref(),
            Some(format!("{ours}\nПозвонила клиенту, ждём акт.").as_str())
        );
        assert_eq!(merged_description("всё переписано", &ours, 7), None);
        let same = format!("{ours}\nтекст");
        assert_eq!(merged_description(&same, &ours, 7), None);
    }

    #[tokio::test]
    async fn the_pacer_lets_a_burst_through_then_keeps_the_rate() {
        let pacer = Pacer::new(50, 5);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.take().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "the burst waits for nothing"
        );
        for _ in 0..5 {
            pacer.take().await;
        }
        // Five more tokens at 50/s: about 100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "{:?}",
            start.elapsed()
        );
    }
}

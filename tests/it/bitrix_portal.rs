//! A local stand-in for a Bitrix24 portal's REST API over incoming webhooks, written from the official REST
//! documentation (the public `bitrix-tools/b24-rest-docs` repository; each behaviour below names its page) and
//! served only on 127.0.0.1 by the recorder of `sinks.rs`. It models what a real portal does to a connector:
//!
//! - the request-intensity limit (`limits.md`, "Ограничения на интенсивность запросов"): a leaky bucket per portal,
//!   each request adds 1 to a counter that drains by `Y` a second; above `X` the portal answers 503
//!   `QUERY_LIMIT_EXCEEDED` (X/Y = 50/2, Enterprise 250/5; configurable here, enforced as configured), shared by
//!   every application of the portal ([`Portal::spend_at_first`] plays another one);
//! - the operating-time limit (`limits.md`, "Ограничения на ресурсоемкость"; `_includes/system-errors.md`): a
//!   blocked method answers 429 `OPERATION_TIME_LIMIT`; every answer's `time` carries `operating_reset_at`;
//! - webhook authorisation (`_includes/system-errors.md`): an unknown webhook code answers 401 `NO_AUTH_FOUND`, a
//!   method outside the webhook's scopes 403 `insufficient_scope`; `scope` lists them
//!   (`api-reference/common/system/scope.md`);
//! - `tasks.task.add` (`api-reference/tasks/tasks-task-add.md`): TITLE and RESPONSIBLE_ID required (400
//!   `ERROR_CORE`), a responsible who is no active user refused; TITLE stored in the core's `varchar(255)` (longer
//!   titles are cut, as the database cuts them); CREATED_BY is the webhook's owner unless given;
//! - rights (`api-reference/tasks/tasks-task-get.md`, "Доступ к данным зависит от прав"): requests run as the
//!   webhook's owner, who sees a task only as its creator, responsible, co-worker, observer, or as an admin;
//! - a task that does not exist or is not visible: `tasks.task.get` answers an empty result `[]`
//!   (`tasks-task-get.md`), `tasks.task.update` and `tasks.task.complete` answer error `"0"` "Действие над
//!   задачей не разрешено" (`tasks-task-update.md`, `status/tasks-task-complete.md`);
//! - the recycle bin: a deleted task (`tasks-task-delete.md`) keeps its id there and can be restored (Bitrix24's
//!   user help; the REST pages only say a deleted task no longer exists for `get`);
//! - 50-row pages of list methods with `start` and `next` (`tasks-task-list.md`: "Размер страницы результатов
//!   всегда статичный — 50 записей"; `api-reference/user/user-get.md`; `crm-requisite-list.md`);
//! - `tasks.task.complete`: status 5 "completed", or 4 "awaiting control" (`api-reference/tasks/fields.md`,
//!   `status`, `taskControl`) when the task has a controller and the one completing is not its creator; a task
//!   done already refuses with error `"0"`;
//! - `tasks.task.renew` (`tasks-task-renew.md`): a completed task (status 5 or 4) back to status 2 "pending"; a task
//!   that does not exist, is not visible, or whose state allows no renewal answers 400 `1048582` "Действие над
//!   задачей не разрешено";
//! - `user.get` by EMAIL and ACTIVE (`user-get.md`, scopes `user`, `user_brief`, `user_basic`);
//! - `crm.requisite.list` filtered by RQ_INN (`crm-requisite-list.md`, scope `crm`);
//! - `disk.folder.uploadfile` (`api-reference/disk/folder/disk-folder-upload-file.md`: folder `id`, `data.NAME`,
//!   `fileContent` = [name, base64]), `tasks.task.files.attach` (`tasks-task-files-attach.md`: taskId, fileId),
//!   `task.checklistitem.add` (`api-reference/tasks/checklist-item/task-checklist-item-add.md`: TASKID,
//!   FIELDS.TITLE required; PARENT_ID 0 names a new checklist).
//!
//! It can also lose an answer after acting (the connection breaks before the answer arrives).

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A portal user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub active: bool,
    pub admin: bool,
}

/// An incoming webhook: its owner and code (`/rest/<owner>/<code>/`) and scopes.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub owner: u64,
    pub code: String,
    pub scopes: BTreeSet<String>,
}

/// A file on the portal's Drive.
#[derive(Debug, Clone)]
pub struct DiskFile {
    pub id: u64,
    pub folder: u64,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The portal's state.
#[derive(Debug)]
pub struct Portal {
    /// Live tasks: (id, fields in the upper-case names the REST API takes).
    pub tasks: Vec<(u64, Value)>,
    /// Deleted tasks, restorable with their id.
    pub bin: Vec<(u64, Value)>,
    pub users: Vec<User>,
    pub webhooks: Vec<Webhook>,
    /// The intensity limit: the counter drains by this much a second (`Y`)...
    pub per_second: f64,
    /// ...and above this the portal answers 503 (`X`).
    pub burst: f64,
    counter: f64,
    counted_at: Instant,
    /// Another application makes this many requests just as our first call of the method arrives (method, n).
    pub spend_at_first: Option<(String, f64)>,
    /// Methods whose next calls answer 429 `OPERATION_TIME_LIMIT` (method → how many calls).
    pub time_blocked: BTreeMap<String, usize>,
    /// Create the next task but break the connection before the answer.
    pub lose_next_add: bool,
    /// Complete the next task but break the connection before the answer.
    pub lose_next_complete: bool,
    next_id: u64,
    pub folders: BTreeSet<u64>,
    pub files: Vec<DiskFile>,
    /// (task, file) attached.
    pub attached: Vec<(u64, u64)>,
    /// (task, item id, fields) of checklist items.
    pub checklist: Vec<(u64, u64, Value)>,
    /// CRM requisites: (company id, INN).
    pub requisites: Vec<(u64, String)>,
    /// How often each error code was answered.
    pub answered: BTreeMap<String, usize>,
}

impl Default for Portal {
    /// A portal on the standard plan (2 requests/s, burst 50): the director (an admin), the integration user who
    /// owns the webhook `/rest/7/t0ken/` (scope `task`), and Morozova.
    fn default() -> Portal {
        let user = |id, email: &str, admin| User {
            id,
            email: email.to_owned(),
            active: true,
            admin,
        };
        Portal {
            tasks: Vec::new(),
            bin: Vec::new(),
            users: vec![
                user(1, "director@debet-service.example", true),
                user(7, "integration@debet-service.example", false),
                user(42, "morozova@debet-service.example", false),
            ],
            webhooks: vec![Webhook {
                owner: 7,
                code: "t0ken".to_owned(),
                scopes: ["task".to_owned()].into(),
            }],
            per_second: 2.0,
            burst: 50.0,
            counter: 0.0,
            counted_at: Instant::now(),
            spend_at_first: None,
            time_blocked: BTreeMap::new(),
            lose_next_add: false,
            lose_next_complete: false,
            next_id: 100,
            folders: BTreeSet::new(),
            files: Vec::new(),
            attached: Vec::new(),
            checklist: Vec::new(),
            requisites: Vec::new(),
            answered: BTreeMap::new(),
        }
    }
}

/// `RESPONSIBLE_ID` → `responsibleId`: the tasks API takes upper-case names and answers in camelCase
/// (`api-reference/tasks/fields.md`).
fn camel(name: &str) -> String {
    let mut out = String::new();
    for (i, part) in name.split('_').enumerate() {
        let lower = part.to_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| as_text(x).parse().ok()).collect())
        .unwrap_or_default()
}

/// The scope a method needs (`api-reference/scopes/permissions.md`); `None`: any webhook may call it.
fn scope_of(method: &str) -> Option<&'static [&'static str]> {
    if method.starts_with("tasks.") || method.starts_with("task.") {
        Some(&["task"])
    } else if method == "user.get" {
        Some(&["user", "user_basic", "user_brief"])
    } else if method.starts_with("disk.") {
        Some(&["disk"])
    } else if method.starts_with("crm.") {
        Some(&["crm"])
    } else {
        None
    }
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, code: &str, description: &str) -> Answer {
    (
        status,
        json!({"error": code, "error_description": description}),
    )
}

fn not_allowed() -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        "0",
        "Действие над задачей не разрешено",
    )
}

impl Portal {
    /// A portal limited to `per_second` with a burst of `burst` (Enterprise: 5/250).
    pub fn with_limit(per_second: f64, burst: f64) -> Portal {
        Portal {
            per_second,
            burst,
            ..Portal::default()
        }
    }

    /// Moves a task to the recycle bin, as a person deleting it in Bitrix24 does.
    pub fn delete(&mut self, id: u64) {
        if let Some(at) = self.tasks.iter().position(|(i, _)| *i == id) {
            let task = self.tasks.remove(at);
            self.bin.push(task);
        }
    }

    /// The live task `id`.
    pub fn task(&self, id: u64) -> Option<&Value> {
        self.tasks.iter().find(|(i, _)| *i == id).map(|(_, f)| f)
    }

    /// The live task whose XML_ID is `xml_id`.
    pub fn task_by_xml_id(&self, xml_id: &str) -> Vec<(u64, Value)> {
        self.tasks
            .iter()
            .filter(|(_, f)| f["XML_ID"] == xml_id)
            .cloned()
            .collect()
    }

    fn leak(&mut self) {
        let now = Instant::now();
        let drained = now.duration_since(self.counted_at).as_secs_f64() * self.per_second;
        self.counter = (self.counter - drained).max(0.0);
        self.counted_at = now;
    }

    fn count(&mut self, code: &str) {
        *self.answered.entry(code.to_owned()).or_default() += 1;
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id && u.active)
    }

    /// Whether `user` may see the task (`tasks-task-get.md`: access depends on rights).
    fn visible(&self, fields: &Value, user: u64) -> bool {
        let is = |key: &str| as_text(&fields[key]) == user.to_string();
        self.user(user).is_some_and(|u| u.admin)
            || is("CREATED_BY")
            || is("RESPONSIBLE_ID")
            || ids(&fields["ACCOMPLICES"]).contains(&user)
            || ids(&fields["AUDITORS"]).contains(&user)
    }

    /// The task as the tasks API answers it: camelCase names, ids as strings.
    fn shown(id: u64, fields: &Value) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("id".into(), Value::String(id.to_string()));
        for (k, v) in fields.as_object().cloned().unwrap_or_default() {
            let v = match v {
                Value::Number(n) => Value::String(n.to_string()),
                Value::Array(a) => Value::Array(
                    a.into_iter()
                        .map(|x| match x {
                            Value::Number(n) => Value::String(n.to_string()),
                            x => x,
                        })
                        .collect(),
                ),
                v => v,
            };
            out.insert(camel(&k), v);
        }
        Value::Object(out)
    }

    /// One page of `rows` from `start` (50 a page), with `total` and `next` as the list methods answer.
    fn page(rows: Vec<Value>, start: usize, wrap: impl Fn(Vec<Value>) -> Value) -> Value {
        let total = rows.len();
        let page: Vec<Value> = rows.into_iter().skip(start).take(50).collect();
        let mut answer = json!({"result": wrap(page), "total": total});
        if start + 50 < total {
            answer["next"] = json!(start + 50);
        }
        answer
    }

    fn visible_task(&self, params: &Value, key: &str, user: u64) -> Option<u64> {
        let id: u64 = as_text(&params[key]).parse().ok()?;
        self.tasks
            .iter()
            .find(|(i, f)| *i == id && self.visible(f, user))
            .map(|(i, _)| *i)
    }

    /// Answers one request to `/rest/<owner>/<code>/<method>.json` with a JSON body; `None` when the connection
    /// breaks before the answer (after the portal acted).
    pub fn answer(&mut self, path: &str, body: &[u8]) -> Option<Answer> {
        let params: Value = serde_json::from_slice(body).unwrap_or(json!({}));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["rest", owner, code, method] = parts.as_slice() else {
            return Some(error(
                StatusCode::NOT_FOUND,
                "ERROR_METHOD_NOT_FOUND",
                "Method not found",
            ));
        };
        let method = method.trim_end_matches(".json").to_lowercase();
        // limits.md: every request counts, whoever makes it; above X the portal refuses.
        self.leak();
        if self
            .spend_at_first
            .as_ref()
            .is_some_and(|(m, _)| *m == method)
        {
            let (_, n) = self.spend_at_first.take().unwrap_or_default();
            self.counter += n;
        }
        if self.counter >= self.burst {
            self.count("QUERY_LIMIT_EXCEEDED");
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
            ));
        }
        self.counter += 1.0;
        let hook = self
            .webhooks
            .iter()
            .find(|w| w.owner.to_string() == *owner && w.code == *code)
            .cloned();
        let Some(hook) = hook.filter(|h| self.user(h.owner).is_some()) else {
            self.count("NO_AUTH_FOUND");
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "NO_AUTH_FOUND",
                "Wrong authorization data",
            ));
        };
        if let Some(scopes) = scope_of(&method) {
            if !scopes.iter().any(|s| hook.scopes.contains(*s)) {
                self.count("insufficient_scope");
                return Some(error(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "The request requires higher privileges than provided by the webhook token",
                ));
            }
        }
        if let Some(left) = self.time_blocked.get_mut(&method).filter(|n| **n > 0) {
            *left -= 1;
            self.count("OPERATION_TIME_LIMIT");
            return Some(error(
                StatusCode::TOO_MANY_REQUESTS,
                "OPERATION_TIME_LIMIT",
                "Method is blocked due to operation time limit.",
            ));
        }
        let user = hook.owner;
        let reset_at = chrono::Utc::now().timestamp() + 600;
        let time = json!({"start": 1.0, "finish": 1.1, "duration": 0.1, "operating": 0.1,
            "operating_reset_at": reset_at});
        let mut answer = match method.as_str() {
            "scope" => (StatusCode::OK, json!({"result": hook.scopes})),
            "tasks.task.add" => match self.add(&params, user) {
                Ok(id) => {
                    if std::mem::take(&mut self.lose_next_add) {
                        return None;
                    }
                    let shown = Self::shown(id, self.task(id).unwrap_or(&Value::Null));
                    (StatusCode::OK, json!({"result": {"task": shown}}))
                }
                Err(e) => e,
            },
            "tasks.task.list" => {
                let filter = params["filter"].as_object().cloned().unwrap_or_default();
                let rows: Vec<Value> = self
                    .tasks
                    .iter()
                    .filter(|(_, f)| self.visible(f, user))
                    .filter(|(id, f)| {
                        filter.iter().all(|(k, want)| {
                            let want = as_text(want);
                            match k.strip_prefix('%') {
                                Some(k) => as_text(&f[k]).contains(&want),
                                None if k == "ID" => id.to_string() == want,
                                None => as_text(&f[k.as_str()]) == want,
                            }
                        })
                    })
                    .map(|(id, f)| Self::shown(*id, f))
                    .collect();
                let start = as_text(&params["start"]).parse().unwrap_or(0);
                (
                    StatusCode::OK,
                    Self::page(rows, start, |p| json!({"tasks": p})),
                )
            }
            "tasks.task.get" => match self.visible_task(&params, "taskId", user) {
                Some(id) => {
                    let shown = Self::shown(id, self.task(id).unwrap_or(&Value::Null));
                    (StatusCode::OK, json!({"result": {"task": shown}}))
                }
                // tasks-task-get.md: an empty array when the task does not exist or is not accessible.
                None => (StatusCode::OK, json!({"result": []})),
            },
            "tasks.task.update" => {
                let Some(id) = self.visible_task(&params, "taskId", user) else {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "0",
                        "Действие над задачей не разрешено (internal error)",
                    ));
                };
                let fields = params["fields"].as_object().cloned().unwrap_or_default();
                if fields.is_empty() {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "100",
                        "Could not find value for parameter {fields} (internal error)",
                    ));
                }
                if let Some(r) = fields.get("RESPONSIBLE_ID") {
                    if as_text(r).parse().ok().and_then(|r| self.user(r)).is_none() {
                        return Some(error(
                            StatusCode::BAD_REQUEST,
                            "ERROR_CORE",
                            "Пользователь указанный в поле \"Исполнитель\" не найден",
                        ));
                    }
                }
                let task = self
                    .tasks
                    .iter_mut()
                    .find(|(i, _)| *i == id)
                    .map(|(_, f)| f)?;
                for (k, v) in fields {
                    task[k] = v;
                }
                let shown = Self::shown(id, task);
                (StatusCode::OK, json!({"result": {"task": shown}}))
            }
            "tasks.task.complete" => {
                let Some(id) = self.visible_task(&params, "taskId", user) else {
                    return Some(not_allowed());
                };
                let lose = std::mem::take(&mut self.lose_next_complete);
                let task = self
                    .tasks
                    .iter_mut()
                    .find(|(i, _)| *i == id)
                    .map(|(_, f)| f)?;
                if task["STATUS"] == "5" || task["STATUS"] == "4" {
                    return Some(not_allowed());
                }
                // fields.md: status 4 "awaiting control" when the task has a controller (taskControl) and the
                // responsible, not its creator, completes it.
                let controlled =
                    task["TASK_CONTROL"] == "Y" && as_text(&task["CREATED_BY"]) != user.to_string();
                task["STATUS"] = if controlled { "4" } else { "5" }.into();
                if lose {
                    return None;
                }
                let shown = Self::shown(id, task);
                (StatusCode::OK, json!({"result": {"task": shown}}))
            }
            "tasks.task.renew" => {
                let refused = || {
                    error(
                        StatusCode::BAD_REQUEST,
                        "1048582",
                        "Действие над задачей не разрешено",
                    )
                };
                let Some(id) = self.visible_task(&params, "taskId", user) else {
                    return Some(refused());
                };
                let task = self
                    .tasks
                    .iter_mut()
                    .find(|(i, _)| *i == id)
                    .map(|(_, f)| f)?;
                if task["STATUS"] != "5" && task["STATUS"] != "4" {
                    return Some(refused());
                }
                task["STATUS"] = "2".into();
                let shown = Self::shown(id, task);
                (StatusCode::OK, json!({"result": {"task": shown}}))
            }
            "tasks.task.delete" => match self.visible_task(&params, "taskId", user) {
                Some(id) => {
                    self.delete(id);
                    (StatusCode::OK, json!({"result": {"task": true}}))
                }
                None => error(
                    StatusCode::BAD_REQUEST,
                    "1048582",
                    "Нет доступа к удалению задачи",
                ),
            },
            "task.checklistitem.add" => {
                let Some(id) = self.visible_task(&params, "TASKID", user) else {
                    return Some(not_allowed());
                };
                let fields = params["FIELDS"].clone();
                if as_text(&fields["TITLE"]).is_empty() {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "ERROR_CORE",
                        "Не указано название пункта",
                    ));
                }
                self.next_id += 1;
                let item = self.next_id;
                self.checklist.push((id, item, fields));
                (StatusCode::OK, json!({"result": item}))
            }
            "tasks.task.files.attach" => {
                let Some(id) = self.visible_task(&params, "taskId", user) else {
                    return Some(not_allowed());
                };
                let file: u64 = as_text(&params["fileId"]).parse().unwrap_or(0);
                if !self.files.iter().any(|f| f.id == file) {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "ERROR_CORE",
                        "Файл не найден",
                    ));
                }
                self.attached.push((id, file));
                (
                    StatusCode::OK,
                    json!({"result": {"attachmentId": self.attached.len()}}),
                )
            }
            "disk.folder.uploadfile" => {
                let folder: u64 = as_text(&params["id"]).parse().unwrap_or(0);
                if !self.folders.contains(&folder) {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "ERROR_NOT_FOUND",
                        "Could not find entity with id",
                    ));
                }
                let content = &params["fileContent"];
                let name = as_text(&params["data"]["NAME"]);
                let Ok(bytes) =
                    base64::engine::general_purpose::STANDARD.decode(as_text(&content[1]))
                else {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "ERROR_ARGUMENT",
                        "fileContent",
                    ));
                };
                self.next_id += 1;
                let id = self.next_id;
                self.files.push(DiskFile {
                    id,
                    folder,
                    name: name.clone(),
                    bytes,
                });
                (
                    StatusCode::OK,
                    json!({"result": {"ID": id, "NAME": name, "PARENT_ID": folder}}),
                )
            }
            "user.get" => {
                let filter = params["FILTER"].clone();
                let emails: Option<Vec<String>> = match &filter["EMAIL"] {
                    Value::Null => None,
                    Value::Array(a) => Some(a.iter().map(|e| as_text(e).to_lowercase()).collect()),
                    e => Some(vec![as_text(e).to_lowercase()]),
                };
                let only_active = filter["ACTIVE"] == true || filter["ACTIVE"] == "Y";
                let rows: Vec<Value> = self
                    .users
                    .iter()
                    .filter(|u| emails.as_ref().is_none_or(|e| e.contains(&u.email)))
                    .filter(|u| !only_active || u.active)
                    .map(|u| json!({"ID": u.id.to_string(), "EMAIL": u.email, "ACTIVE": u.active}))
                    .collect();
                let start = as_text(&params["start"]).parse().unwrap_or(0);
                (StatusCode::OK, Self::page(rows, start, Value::Array))
            }
            "crm.requisite.list" => {
                let inn = as_text(&params["filter"]["RQ_INN"]);
                let rows: Vec<Value> = self
                    .requisites
                    .iter()
                    .filter(|(_, i)| inn.is_empty() || *i == inn)
                    .map(|(company, i)| {
                        json!({"ENTITY_TYPE_ID": "4", "ENTITY_ID": company.to_string(), "RQ_INN": i})
                    })
                    .collect();
                let start = as_text(&params["start"]).parse().unwrap_or(0);
                (StatusCode::OK, Self::page(rows, start, Value::Array))
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "ERROR_METHOD_NOT_FOUND",
                "Method not found",
            ),
        };
        if answer.0.is_success() {
            answer.1["time"] = time;
        } else if let Some(code) = answer.1["error"].as_str() {
            let code = code.to_owned();
            self.count(&code);
        }
        Some(answer)
    }

    /// `tasks.task.add` (tasks-task-add.md): required fields, an existing responsible, the 255-character title.
    fn add(&mut self, params: &Value, user: u64) -> Result<u64, Answer> {
        let Some(fields) = params["fields"].as_object().filter(|f| !f.is_empty()) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "100",
                "Could not find value for parameter {fields} (internal error)",
            ));
        };
        let mut fields = fields.clone();
        let title = as_text(fields.get("TITLE").unwrap_or(&Value::Null));
        if title.trim().is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ERROR_CORE",
                "Не указано название задачи<br>",
            ));
        }
        let Some(responsible) = fields.get("RESPONSIBLE_ID").map(as_text) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ERROR_CORE",
                "Не указан исполнитель<br>",
            ));
        };
        if responsible
            .parse()
            .ok()
            .and_then(|r| self.user(r))
            .is_none()
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ERROR_CORE",
                "Пользователь указанный в поле \"Исполнитель\" не найден<br>",
            ));
        }
        // The core's TITLE is varchar(255): a longer title is cut where the column ends.
        fields.insert(
            "TITLE".into(),
            title.chars().take(255).collect::<String>().into(),
        );
        fields
            .entry("CREATED_BY")
            .or_insert_with(|| Value::from(user));
        fields.entry("STATUS").or_insert_with(|| "2".into());
        self.next_id += 1;
        let id = self.next_id;
        self.tasks.push((id, Value::Object(fields)));
        Ok(id)
    }
}

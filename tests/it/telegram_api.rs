//! A local stand-in for the Telegram Bot API (<https://core.telegram.org/bots/api>), served only on 127.0.0.1 over
//! plain HTTP/1.1 on a raw socket, so it can also drop a connection after acting. Written from the documentation:
//!
//! - requests are `POST /bot<token>/<method>` (method names are case-insensitive, "Making requests"); this stand-in
//!   takes JSON bodies (`application/json`, one of the four documented ways);
//! - every answer is a JSON object with `ok`; on failure `error_code`, `description` and, for some errors,
//!   `parameters` (`ResponseParameters`: `retry_after` for flood control, `migrate_to_chat_id` for a group that
//!   became a supergroup);
//! - a token the server does not know answers 401 "Unauthorized"; a path that is no bot method, 404 "Not Found";
//! - `getMe` answers the bot's `User` (`is_bot`, `first_name`, `username`);
//! - `sendMessage` needs `chat_id` (Integer or `@channelusername`) and `text` of 1–4096 characters after entity
//!   parsing (400 "message text is empty" / "message is too long"); an unknown chat answers 400 "Bad Request: chat
//!   not found", a person who blocked the bot 403 "Forbidden: bot was blocked by the user", a migrated group 400
//!   with `migrate_to_chat_id`; `parse_mode` with a malformed entity answers 400 "can't parse entities";
//! - flood control (Bots FAQ, "My bot is hitting limits, how do I avoid this?"): about one message a second in a
//!   chat and 30 a second over all chats; above that 429 "Too Many Requests: retry after N" with
//!   `parameters.retry_after`. Enforced with some tolerance for the jitter of a loaded test machine (a client that
//!   keeps the pace never sees it), and forced on demand ([`BotApi::flood_next`]).
//!
//! It can also fail like a real service on a bad day: answer 502 Bad Gateway (an HTML page, not the API's JSON)
//! for the next requests, lose the answer of the next message it accepts (the message is in the chat, the
//! connection breaks before the answer), and be stopped and started again on the same port (down, then back).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The token the stand-in's bot has.
pub const TOKEN: &str = "123456789:AAHtest-Token_of_the_stand_in";

/// The stand-in's bot id (the token's first part).
pub const BOT_ID: i64 = 123_456_789;

/// The documented pace in one chat (one message a second), less an allowance for the jitter of a loaded machine:
/// two messages to one chat closer than this earn a 429.
const PER_CHAT: Duration = Duration::from_millis(700);

/// The documented pace over all chats: at most this many messages in any second.
const GLOBAL_PER_SECOND: usize = 30;

/// A chat the bot may write to.
#[derive(Debug, Clone, Default)]
pub struct Chat {
    /// The person blocked the bot (403).
    pub blocked: bool,
    /// The group became this supergroup (400 with `migrate_to_chat_id`).
    pub migrated_to: Option<i64>,
}

/// A message the stand-in accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    pub text: String,
    /// The request carried a `parse_mode`.
    pub parse_mode: Option<String>,
    /// Its answer was lost on the way back.
    pub answer_lost: bool,
}

/// The API's state.
#[derive(Debug, Default)]
pub struct State {
    pub chats: BTreeMap<i64, Chat>,
    pub sent: Vec<Sent>,
    /// Every request: (method, chat_id as written, or "").
    pub requests: Vec<(String, String)>,
    /// Answer the next `sendMessage` with 429 and this `retry_after`.
    pub flood_next: Option<u64>,
    /// Answer this many next requests with 502 Bad Gateway.
    pub bad_gateway: usize,
    /// Accept the next message, then break the connection before the answer.
    pub lose_next: bool,
    /// How often each error code was answered.
    pub answered: BTreeMap<u16, usize>,
    last_in_chat: BTreeMap<i64, Instant>,
    /// When the messages of the last second were accepted.
    last_second: Vec<Instant>,
}

/// What one request gets: an HTTP status and body, or a broken connection.
enum Reply {
    Answer(u16, String, &'static str),
    Drop,
}

fn api_error(state: &mut State, code: u16, description: &str, parameters: Option<Value>) -> Reply {
    *state.answered.entry(code).or_default() += 1;
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    Reply::Answer(code, body.to_string(), "application/json")
}

fn ok(result: Value) -> Reply {
    Reply::Answer(
        200,
        json!({"ok": true, "result": result}).to_string(),
        "application/json",
    )
}

impl State {
    fn handle(&mut self, path: &str, body: &[u8]) -> Reply {
        let Some((token, method)) = path
            .strip_prefix("/bot")
            .and_then(|rest| rest.split_once('/'))
        else {
            return api_error(self, 404, "Not Found", None);
        };
        let method = method.to_lowercase();
        let params: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let chat_written = match &params["chat_id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        self.requests.push((method.clone(), chat_written.clone()));
        if self.bad_gateway > 0 {
            self.bad_gateway -= 1;
            *self.answered.entry(502).or_default() += 1;
            return Reply::Answer(
                502,
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                    .to_owned(),
                "text/html",
            );
        }
        if token != TOKEN {
            return api_error(self, 401, "Unauthorized", None);
        }
        match method.as_str() {
            "getme" => ok(
                json!({"id": BOT_ID, "is_bot": true, "first_name": "Taxinbox",
                "username": "taxinbox_test_bot", "can_join_groups": false}),
            ),
            "sendmessage" => self.send_message(&params, &chat_written),
            _ => api_error(self, 404, "Not Found: method not found", None),
        }
    }

    fn send_message(&mut self, params: &Value, chat_written: &str) -> Reply {
        if chat_written.is_empty() {
            return api_error(self, 400, "Bad Request: chat_id is empty", None);
        }
        let text = params["text"].as_str().unwrap_or_default().to_owned();
        if text.trim().is_empty() {
            return api_error(self, 400, "Bad Request: message text is empty", None);
        }
        if text.encode_utf16().count() > 4096 {
            return api_error(self, 400, "Bad Request: message is too long", None);
        }
        let parse_mode = params["parse_mode"].as_str().map(str::to_owned);
        if parse_mode.as_deref() == Some("HTML") && text.contains('<') && !text.contains('>') {
            return api_error(
                self,
                400,
                "Bad Request: can't parse entities: unclosed start tag",
                None,
            );
        }
        let Ok(chat_id) = chat_written.parse::<i64>() else {
            // No channel in this stand-in has a username.
            return api_error(self, 400, "Bad Request: chat not found", None);
        };
        let Some(chat) = self.chats.get(&chat_id).cloned() else {
            return api_error(self, 400, "Bad Request: chat not found", None);
        };
        if let Some(new) = chat.migrated_to {
            return api_error(
                self,
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                Some(json!({"migrate_to_chat_id": new})),
            );
        }
        if chat.blocked {
            return api_error(self, 403, "Forbidden: bot was blocked by the user", None);
        }
        let now = Instant::now();
        let flood = self.flood_next.take().or_else(|| {
            let in_chat = self
                .last_in_chat
                .get(&chat_id)
                .is_some_and(|t| now.duration_since(*t) < PER_CHAT);
            self.last_second
                .retain(|t| now.duration_since(*t) < Duration::from_secs(1));
            let any = self.last_second.len() >= GLOBAL_PER_SECOND;
            (in_chat || any).then_some(1)
        });
        if let Some(after) = flood {
            return api_error(
                self,
                429,
                &format!("Too Many Requests: retry after {after}"),
                Some(json!({"retry_after": after})),
            );
        }
        self.last_in_chat.insert(chat_id, now);
        self.last_second.push(now);
        let lose = std::mem::take(&mut self.lose_next);
        self.sent.push(Sent {
            chat_id,
            text: text.clone(),
            parse_mode,
            answer_lost: lose,
        });
        if lose {
            return Reply::Drop;
        }
        let id = self.sent.len();
        ok(
            json!({"message_id": id, "date": chrono::Utc::now().timestamp(),
            "chat": {"id": chat_id, "type": if chat_id < 0 { "group" } else { "private" }},
            "from": {"id": BOT_ID, "is_bot": true, "first_name": "Taxinbox"},
            "text": text}),
        )
    }
}

/// The stand-in, shared with the test that drives it.
#[derive(Debug, Clone, Default)]
pub struct BotApi(pub Arc<Mutex<State>>);

impl BotApi {
    /// A bot that may write to these chats.
    pub fn with_chats(chats: &[i64]) -> BotApi {
        let api = BotApi::default();
        api.state().chats = chats.iter().map(|c| (*c, Chat::default())).collect();
        api
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    pub fn flood_next(&self, retry_after: u64) {
        self.state().flood_next = Some(retry_after);
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn serve(&self, port: u16) -> Server {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the Bot API stand-in");
        let addr = listener.local_addr().unwrap();
        let state = self.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    break;
                };
                connections.spawn(connection(state.clone(), socket));
            }
        });
        Server { addr, task }
    }
}

/// One HTTP/1.1 connection: requests one after another (keep-alive) until the client closes it, a request is
/// malformed, or an answer is to be lost.
async fn connection(api: BotApi, mut socket: tokio::net::TcpStream) {
    let mut buffer = Vec::new();
    // A bound on the requests of one connection.
    for _ in 0..10_000 {
        let Some((path, body)) = read_request(&mut socket, &mut buffer).await else {
            return;
        };
        let reply = api.0.lock().unwrap().handle(&path, &body);
        match reply {
            Reply::Drop => {
                let _ = socket.shutdown().await;
                return;
            }
            Reply::Answer(status, body, kind) => {
                let reason = match status {
                    200 => "OK",
                    400 => "Bad Request",
                    401 => "Unauthorized",
                    403 => "Forbidden",
                    404 => "Not Found",
                    429 => "Too Many Requests",
                    _ => "Bad Gateway",
                };
                let head = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if socket.write_all(head.as_bytes()).await.is_err()
                    || socket.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Reads one request (its path and body); `None` at the end of the connection or on a malformed request.
async fn read_request(
    socket: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next()?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next()?, parts.next()?.to_owned());
    if method != "POST" && method != "GET" {
        return None;
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > 1024 * 1024 {
        return None;
    }
    let start = head_end + 4;
    while buffer.len() < start + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some((path, body))
}

/// The stand-in listening; stopped (every connection with it) and started again on the same port to play an API
/// that is down.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops listening and drops every open connection; returns the port, to serve on it again.
    pub async fn shut_down(self) -> u16 {
        self.task.abort();
        let _ = self.task.await;
        self.addr.port()
    }
}

//! The Telegram sink: a bot writes to each person's chat through the Bot API (`POST <api_url>/bot<token>/sendMessage`
//! with a JSON body; <https://core.telegram.org/bots/api>). The token is read from `token_file`/`token_env` at each
//! pass and sits only in the request's path: it is never logged (transport errors are reported without their URL).
//!
//! **What is sent.** A new task (`created`) and a task given to someone else (`reassigned`) go to the assignee's
//! chat, with the text of the `task_assigned` mail template (the same words as the mail, and the link to the web
//! view when `[web] base_url` is set). Each escalation rung's message and the daily digest are queued per person by
//! `notify::schedule` (`store::queue_person_notice`) with the text of their mail, so Telegram tells exactly the
//! people the mail tells; a notice about a task gets the task's link. `linked`, `done` and the tracker's own
//! `escalated` event are not messages for a person: they are delivered without a request. Someone without a chat
//! in `chats`/`chats_file` gets nothing (logged; `taxinbox sinks check` lists them): not everyone uses Telegram.
//!
//! **Text.** Plain text, no `parse_mode`, so nothing needs escaping and a client's name with `<` or `_` arrives as
//! written. Telegram takes 1–4096 characters (counted in UTF-16 code units) per message; a longer text (a long
//! digest) is cut at the last whole line that fits, with a closing line saying the rest is in the mail.
//!
//! **Answers.** Every answer is `{ok, result}` or `{ok: false, error_code, description, parameters}`
//! (`ResponseParameters`). 429 "Too Many Requests" carries `parameters.retry_after`: the event waits that long (at
//! least 1 s, at most [`MAX_FLOOD_WAIT`]) without using up an attempt, the sink's pass ends, and no request is
//! made for any chat until then (flood control is per bot). 401/404 (a revoked or mistyped token) also wait, [`AUTH_WAIT`], for an admin. 403 ("bot was blocked
//! by the user", "user is deactivated") and 400 ("chat not found"; a group that became a supergroup answers
//! `migrate_to_chat_id`, named in the error so the mapping can be fixed) fail the event for good: it shows in
//! `taxinbox sinks status` and holds back only later events of the same task, never other people's messages.
//! 5xx, a broken connection and a timeout are retried with the outbox's back-off.
//!
//! **Pace.** The Bot FAQ asks for at most about one message a second per chat and 30 a second per bot; every
//! request waits for both ([`pace`]), so a burst of events never earns a 429.
//!
//! **Once per event, honestly: at least once.** `sendMessage` has no idempotency key, and Telegram cannot be asked
//! whether a message was sent. When the request went out and its answer was lost (a dropped connection, a timeout),
//! taxinbox cannot know whether the message arrived; it sends it again at the next attempt, as the e-mail outbox
//! does. The person may then see the same message twice; never none. An event whose answer arrived is marked
//! delivered in the same step and never sent again.

use super::sink::{post_json, SinkError};
use secrecy::{ExposeSecret as _, SecretString};
use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Telegram's limit of one message's text, in UTF-16 code units (`sendMessage`: "1-4096 characters").
pub const MAX_TEXT: usize = 4096;

/// The longest flood-control wait honoured as asked: a larger `retry_after` is cut to this (the event is tried
/// again then, and waits again if Telegram still says so).
pub const MAX_FLOOD_WAIT: Duration = Duration::from_secs(3600);

/// How long events wait after the Bot API refused the token (401/404): an admin has to act.
pub const AUTH_WAIT: Duration = Duration::from_secs(900);

/// The Bot FAQ's pace in one chat: about one message a second.
pub const PER_CHAT_INTERVAL: Duration = Duration::from_secs(1);

/// The Bot FAQ's pace of one bot over all chats: about 30 messages a second.
pub const GLOBAL_INTERVAL: Duration = Duration::from_millis(34);

/// The line closing a text cut to [`MAX_TEXT`].
const CUT_NOTE: &str = "… (текст сокращён: полностью — в письме)";

/// A bot as one delivery (or `sinks check`) uses it.
#[derive(Debug, Clone, Copy)]
pub struct Bot<'a> {
    pub client: &'a reqwest::Client,
    /// The Bot API's address, without a path.
    pub api_url: &'a str,
    pub token: &'a SecretString,
}

/// A token as @BotFather issues it: `<bot id>:<secret>`. Never echoed.
pub fn check_token(token: &str) -> Result<(), String> {
    let shaped = token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if shaped {
        Ok(())
    } else {
        Err("the bot token is not of the shape <bot id>:<secret> that @BotFather issues".to_owned())
    }
}

/// One Bot API call: its `result` on `ok: true`, else the error classified (see the module doc).
pub async fn call(
    bot: Bot<'_>,
    method: &str,
    params: &serde_json::Value,
) -> Result<serde_json::Value, SinkError> {
    let url = format!(
        "{}/bot{}/{method}",
        bot.api_url.trim_end_matches('/'),
        bot.token.expose_secret()
    );
    let (status, text, json) = post_json(bot.client, &url, params).await?;
    if json.get("ok").and_then(serde_json::Value::as_bool) == Some(true) && status.is_success() {
        return Ok(json
            .get("result")
            .cloned()
            .unwrap_or(serde_json::Value::Null));
    }
    Err(classify(method, status.as_u16(), &json, &text))
}

/// The error of an answer that is not `ok`.
pub fn classify(method: &str, status: u16, json: &serde_json::Value, text: &str) -> SinkError {
    let code = json
        .get("error_code")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(status);
    let description = json
        .get("description")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
    let parameters = json.get("parameters");
    let message = format!("{method}: {code} {description}");
    match code {
        429 => {
            let asked = parameters
                .and_then(|p| p.get("retry_after"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            SinkError::Wait {
                message: format!("{message} (flood control: wait {asked} s)"),
                wait: Duration::from_secs(asked).clamp(Duration::from_secs(1), MAX_FLOOD_WAIT),
            }
        }
        401 | 404 => SinkError::Wait {
            message: format!(
                "{message}: the Bot API refuses the token (revoked or mistyped? see @BotFather)"
            ),
            wait: AUTH_WAIT,
        },
        400 => match parameters
            .and_then(|p| p.get("migrate_to_chat_id"))
            .and_then(serde_json::Value::as_i64)
        {
            Some(new) => SinkError::Permanent(format!(
                "{message}: the group became a supergroup; set its chat id to {new} in chats/chats_file"
            )),
            None => SinkError::Permanent(message),
        },
        408 => SinkError::Transient(message),
        c if c >= 500 => SinkError::Transient(message),
        _ => SinkError::Permanent(message),
    }
}

/// Waits until `chat` may get a message under the Bot FAQ's pace (one a second per chat, 30 a second per bot),
/// and reserves the slot. Shared by every sink and pass of this process, keyed by the bot.
pub async fn pace(bot: Bot<'_>, chat: &str) {
    /// (bot, chat) → when its next message may go; chat "" is the bot's global slot.
    static NEXT: LazyLock<Mutex<BTreeMap<(String, String), Instant>>> =
        LazyLock::new(|| Mutex::new(BTreeMap::new()));
    let bot = bot_key(bot);
    let key = |c: &str| (bot.clone(), c.to_owned());
    let wait = {
        let mut next = NEXT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let at = [key(""), key(chat)]
            .iter()
            .filter_map(|k| next.get(k).copied())
            .fold(now, Instant::max);
        next.insert(key(""), at + GLOBAL_INTERVAL);
        next.insert(key(chat), at + PER_CHAT_INTERVAL);
        at.duration_since(now)
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The key of a bot in the process-wide pace and flood state: the API's address and the bot id (the token's part
/// before the colon), never its secret.
fn bot_key(bot: Bot<'_>) -> String {
    let id = bot
        .token
        .expose_secret()
        .split(':')
        .next()
        .unwrap_or_default();
    format!("{}#{id}", bot.api_url)
}

/// Until when each bot is held by flood control (a 429's `retry_after`) or a refused token: until then no request is
/// made at all, so the other events of the queue wait too instead of each earning its own 429.
static FLOODED: LazyLock<Mutex<BTreeMap<String, Instant>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Sends `text` (cut to fit, see [`fit`]) to `chat` as plain text.
pub async fn send_message(bot: Bot<'_>, chat: &str, text: &str) -> Result<(), SinkError> {
    let key = bot_key(bot);
    let held = FLOODED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .and_then(|until| until.checked_duration_since(Instant::now()));
    if let Some(wait) = held.filter(|w| !w.is_zero()) {
        return Err(SinkError::Wait {
            message: "sendMessage: held back: the Bot API asked to wait (flood control, or a refused token)"
                .to_owned(),
            wait: wait.max(Duration::from_secs(1)),
        });
    }
    pace(bot, chat).await;
    let result = send_now(bot, chat, text).await;
    if let Err(SinkError::Wait { wait, .. }) = &result {
        FLOODED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Instant::now() + *wait);
    }
    result
}

async fn send_now(bot: Bot<'_>, chat: &str, text: &str) -> Result<(), SinkError> {
    let chat_id = match chat.parse::<i64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(chat),
    };
    call(
        bot,
        "sendMessage",
        &serde_json::json!({
            "chat_id": chat_id,
            "text": fit(text),
            "link_preview_options": {"is_disabled": true},
        }),
    )
    .await
    .map(drop)
}

/// The bot's `@username` and id (`getMe`): `taxinbox sinks check`.
pub async fn get_me(bot: Bot<'_>) -> Result<String, SinkError> {
    let me = call(bot, "getMe", &serde_json::json!({})).await?;
    let name = me
        .get("username")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let id = me
        .get("id")
        .map(serde_json::Value::to_string)
        .unwrap_or_default();
    Ok(format!("@{name} (id {id})"))
}

/// How long `text` is for Telegram: UTF-16 code units.
pub fn telegram_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// `text` trimmed, blank lines run together, and, when longer than [`MAX_TEXT`], cut after its last whole line that
/// fits, with [`CUT_NOTE`] (a single line too long is cut inside).
pub fn fit(text: &str) -> String {
    // A template's empty placeholders leave runs of blank lines: one is enough in a chat.
    let mut tidy = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        blank = if line.is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            tidy.push_str(line);
            tidy.push('\n');
        }
    }
    let text = tidy.trim_end();
    if telegram_len(text) <= MAX_TEXT {
        return text.to_owned();
    }
    let room = MAX_TEXT - telegram_len(CUT_NOTE) - 1;
    let mut kept = String::new();
    let mut used = 0;
    for line in text.split_inclusive('\n') {
        let n = telegram_len(line);
        if used + n > room {
            if kept.is_empty() {
                for c in line.chars() {
                    if used + c.len_utf16() > room {
                        break;
                    }
                    used += c.len_utf16();
                    kept.push(c);
                }
            }
            break;
        }
        used += n;
        kept.push_str(line);
    }
    format!("{}\n{CUT_NOTE}", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_on_a_line_within_4096_utf16_units() {
        let line = "— 19.01.2026 · Ответить на требование · ООО «Ромашка» 😀\n";
        let text = line.repeat(200);
        let cut = fit(&text);
        assert!(telegram_len(&cut) <= MAX_TEXT, "{}", telegram_len(&cut));
        assert!(cut.ends_with(CUT_NOTE));
        let body = cut.trim_end_matches(CUT_NOTE).trim_end();
        assert!(body.ends_with("😀"), "whole lines only");
        assert_eq!(fit("коротко\n"), "коротко");
        assert_eq!(
            fit("Задача: А\n\n\n\nСрок: 19.01  \n"),
            "Задача: А\n\nСрок: 19.01"
        );
        let one = "я".repeat(5000);
        assert!(telegram_len(&fit(&one)) <= MAX_TEXT);
    }

    #[test]
    fn answers_are_classified_as_the_bot_api_documents_them() {
        let flood = serde_json::json!({"ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}});
        assert!(matches!(classify("sendMessage", 429, &flood, ""),
            SinkError::Wait { wait, .. } if wait == Duration::from_secs(7)));
        let huge = serde_json::json!({"ok": false, "error_code": 429, "parameters": {"retry_after": 999_999}});
        assert!(matches!(classify("sendMessage", 429, &huge, ""),
            SinkError::Wait { wait, .. } if wait == MAX_FLOOD_WAIT));
        let blocked = serde_json::json!({"ok": false, "error_code": 403,
            "description": "Forbidden: bot was blocked by the user"});
        assert!(matches!(classify("sendMessage", 403, &blocked, ""),
            SinkError::Permanent(m) if m.contains("blocked")));
        let migrated = serde_json::json!({"ok": false, "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1_001_234_567_890_i64}});
        assert!(matches!(classify("sendMessage", 400, &migrated, ""),
            SinkError::Permanent(m) if m.contains("-1001234567890")));
        assert!(
            classify("sendMessage", 502, &serde_json::Value::Null, "Bad Gateway").is_retryable()
        );
        assert!(matches!(
            classify(
                "sendMessage",
                401,
                &serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
                ""
            ),
            SinkError::Wait { .. }
        ));
    }

    #[test]
    fn a_token_is_id_colon_secret_and_never_echoed() {
        assert_eq!(check_token("123456:AAH-x_y"), Ok(()));
        for bad in ["", "123456", "abc:def", "123:", "123:a b"] {
            let e = check_token(bad).unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
    }
}

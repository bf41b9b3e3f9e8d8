//! `audit show`: one mail's story — its headers, decision, tasks, notifications and every log entry about it.

use super::log::*;
use crate::store::{self};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Everything known about one mail, for `audit show`.
#[derive(Debug, Clone)]
pub struct MailStory {
    pub id: i64,
    pub message_id: Option<String>,
    pub source: String,
    pub mailbox: String,
    pub fetched_at: String,
    pub processed_at: String,
    pub received: String,
    pub from: String,
    pub subject: String,
    pub sha256: String,
    pub raw: RawState,
    /// The raw header block as it arrived, while the raw mail is kept.
    pub headers: Option<String>,
    /// The same headers decoded for a person: one line per field, encoded words (RFC 2047) and addresses decoded,
    /// folded lines joined.
    pub decoded_headers: Vec<(String, String)>,
    pub facts: serde_json::Value,
    pub status: store::MessageStatus,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client: Option<String>,
    pub demand: Option<String>,
    pub joins: Option<String>,
    pub rule: Option<String>,
    pub ruleset: Option<String>,
    /// When the daemon first ran with that ruleset, and its files.
    pub ruleset_recorded: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub tasks: Vec<StoryTask>,
    pub notifications: Vec<StoryNotification>,
    /// Every entry about the mail, purge entries included, oldest first.
    pub history: Vec<LogLine>,
}

/// What is kept of a mail's raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawState {
    Kept { size: i64, matches_hash: bool },
    Purged { size: i64 },
    Missing,
}

#[derive(Debug, Clone)]
pub struct StoryTask {
    pub step: String,
    pub title: String,
    pub role: String,
    pub assignee: Option<String>,
    pub due: String,
    pub status: store::TaskStatus,
    pub provenance: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct StoryNotification {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub status: store::NotificationStatus,
    pub attempts: i64,
    pub sent_at: Option<String>,
    pub error: Option<String>,
}

/// Most of a header block anyone reads; a hostile mail's megabyte of headers is cut, not printed whole.
const MAX_HEADER_BYTES: usize = 64 * 1024;

fn header_block(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let cut = end.min(MAX_HEADER_BYTES);
    let mut s = String::from_utf8_lossy(&raw[..cut]).replace("\r\n", "\n");
    if cut < end {
        s.push_str("\n[… headers cut]");
    }
    s
}

/// The header fields of a mail decoded for reading (mail-parser's decoding; a field it does not decode shows its
/// unfolded raw text).
pub fn decoded_headers(raw: &[u8]) -> Vec<(String, String)> {
    use mail_parser::HeaderValue;
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    for h in message.headers() {
        let unfolded = || {
            let start = usize::try_from(h.offset_start).unwrap_or(0);
            let end = usize::try_from(h.offset_end).unwrap_or(0);
            let raw = raw.get(start..end.max(start)).unwrap_or_default();
            String::from_utf8_lossy(raw)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let value = match &h.value {
            HeaderValue::Text(t) => t.split_whitespace().collect::<Vec<_>>().join(" "),
            HeaderValue::TextList(list) => list.join(", "),
            HeaderValue::Address(address) => address
                .iter()
                .map(|a| match (a.name(), a.address()) {
                    (Some(name), Some(addr)) => format!("{name} <{addr}>"),
                    (None, Some(addr)) => addr.to_owned(),
                    (Some(name), None) => name.to_owned(),
                    (None, None) => String::new(),
                })
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(", "),
            _ => unfolded(),
        };
        let value = if value.is_empty() { unfolded() } else { value };
        bytes += value.len();
        if bytes > MAX_HEADER_BYTES {
            out.push(("…".to_owned(), "[headers cut]".to_owned()));
            break;
        }
        out.push((h.name.as_str().to_owned(), value));
    }
    out
}

pub async fn story(conn: &mut sqlx::AnyConnection, id: i64) -> anyhow::Result<Option<MailStory>> {
    let Some(m) = store::mail(conn, id).await? else {
        return Ok(None);
    };
    let (raw, headers, decoded_headers) = match (m.raw_size, m.raw_kept) {
        (None, _) => (RawState::Missing, None, Vec::new()),
        (Some(size), false) => (RawState::Purged { size }, None, Vec::new()),
        (Some(size), true) => {
            let bytes = store::raw_mail(conn, &m.sha256).await?.unwrap_or_default();
            let matches_hash = crate::store::sha256_hex(&bytes) == m.sha256;
            (
                RawState::Kept { size, matches_hash },
                Some(header_block(&bytes)),
                decoded_headers(&bytes),
            )
        }
    };
    let ruleset_recorded = match &m.ruleset {
        Some(v) => store::ruleset(conn, v)
            .await?
            .map(|r| format!("first run by the daemon {} with {}", r.loaded_at, r.files)),
        None => None,
    };
    let tasks = store::tasks_of_message(conn, id)
        .await?
        .into_iter()
        .map(|t| StoryTask {
            provenance: serde_json::from_str(&t.provenance)
                .unwrap_or(serde_json::Value::String(t.provenance)),
            step: t.step,
            title: t.title,
            role: t.role,
            assignee: t.assignee,
            due: t.due,
            status: t.status,
        })
        .collect();
    let notifications = store::notifications_of_message(conn, id)
        .await?
        .into_iter()
        .map(|n| StoryNotification {
            id: n.id,
            kind: n.kind,
            recipient: n.recipient,
            status: n.status,
            attempts: n.attempts,
            sent_at: n.sent_at,
            error: n.last_error,
        })
        .collect();
    let mut history: Vec<LogLine> = store::entries_of_message(conn, id)
        .await?
        .into_iter()
        .map(LogLine::from)
        .collect();
    for purge in store::entries_with_event(conn, store::RAW_MAIL_PURGED).await? {
        let line = LogLine::from(purge);
        if purged_hashes(&line.payload).contains(m.sha256.as_str()) {
            history.push(line);
        }
    }
    history.sort_by_key(|l| l.seq);
    Ok(Some(MailStory {
        id: m.id,
        message_id: m.message_id,
        source: m.source,
        mailbox: m.mailbox,
        fetched_at: m.fetched_at,
        processed_at: m.processed_at,
        received: m.received_date,
        from: m.from_addr,
        subject: m.subject,
        sha256: m.sha256,
        raw,
        headers,
        decoded_headers,
        facts: serde_json::from_str(&m.facts).unwrap_or(serde_json::Value::String(m.facts)),
        status: m.status,
        category: m.category,
        kind: m.kind,
        client: m.client_inn.map(|inn| match m.client_name {
            Some(name) => format!("{inn} ({name})"),
            None => inn,
        }),
        demand: match (m.demand_number, m.demand_date) {
            (None, None) => None,
            (n, d) => Some(format!(
                "№ {} of {}",
                n.unwrap_or_else(|| "?".into()),
                d.unwrap_or_else(|| "?".into())
            )),
        },
        joins: m.joins,
        rule: m.rule,
        ruleset: m.ruleset,
        ruleset_recorded,
        reason: m.reason,
        error: m.error,
        tasks,
        notifications,
        history,
    }))
}

pub(super) fn purged_hashes(payload: &serde_json::Value) -> BTreeSet<&str> {
    payload["sha256"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

pub fn render_story(s: &MailStory, tz: chrono_tz::Tz) -> String {
    let or_dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let _ = writeln!(out, "mail {}", s.id);
    let _ = writeln!(out, "  message-id:  {}", or_dash(&s.message_id));
    let _ = writeln!(out, "  from:        {}", s.from);
    let _ = writeln!(out, "  subject:     {}", s.subject);
    let _ = writeln!(out, "  received:    {}", s.received);
    let _ = writeln!(out, "  mailbox:     {} ({})", s.mailbox, s.source);
    let _ = writeln!(out, "  fetched:     {}", local_time(&s.fetched_at, tz));
    let _ = writeln!(out, "  sha256:      {}", s.sha256);
    let raw = match &s.raw {
        RawState::Kept {
            size,
            matches_hash: true,
        } => format!("kept, {size} bytes, matches its SHA-256"),
        RawState::Kept {
            size,
            matches_hash: false,
        } => format!("kept, {size} bytes, DOES NOT MATCH its SHA-256: altered after it was stored"),
        RawState::Purged { size } => {
            format!("purged after the retention period ({size} bytes; the hash stays)")
        }
        RawState::Missing => "MISSING from the store".into(),
    };
    let _ = writeln!(out, "  raw mail:    {raw}");

    out.push_str("\ndecision\n");
    let _ = writeln!(out, "  status:      {}", s.status);
    if let Some(error) = &s.error {
        let _ = writeln!(out, "  quarantined because: {error}");
    }
    let what = match (&s.category, &s.kind) {
        (Some(c), Some(k)) => format!("{c}/{k}"),
        (Some(c), None) => c.clone(),
        _ => "-".into(),
    };
    let _ = writeln!(out, "  category:    {what}");
    let _ = writeln!(out, "  client:      {}", or_dash(&s.client));
    if let Some(d) = &s.demand {
        let _ = writeln!(out, "  demand:      {d}");
    }
    if let Some(j) = &s.joins {
        let _ = writeln!(out, "  joins case of: {j}");
    }
    let _ = writeln!(out, "  rule:        {}", or_dash(&s.rule));
    let _ = writeln!(out, "  reason:      {}", or_dash(&s.reason));
    let _ = writeln!(out, "  ruleset:     {}", or_dash(&s.ruleset));
    if let Some(r) = &s.ruleset_recorded {
        let _ = writeln!(out, "               {r}");
    }
    let _ = writeln!(out, "  decided:     {}", local_time(&s.processed_at, tz));
    // The decision trace of the newest log entry that has one (older entries were written before traces existed).
    if let Some(trace) = s
        .history
        .iter()
        .rev()
        .map(|l| &l.payload["trace"])
        .find(|t| t.is_object())
    {
        out.push_str(&render_trace(trace));
    }

    let _ = writeln!(out, "\ntasks ({})", s.tasks.len());
    for t in &s.tasks {
        let _ = writeln!(
            out,
            "  {} [{}] {} → {} due {} ({})",
            t.step,
            t.role,
            t.title,
            t.assignee.as_deref().unwrap_or("(unassigned)"),
            t.due,
            t.status
        );
        let _ = writeln!(out, "      deadline from: {}", t.provenance);
    }

    let _ = writeln!(out, "\nnotifications ({})", s.notifications.len());
    for n in &s.notifications {
        let _ = write!(
            out,
            "  #{} {} to {}: {} after {} attempt(s)",
            n.id, n.kind, n.recipient, n.status, n.attempts
        );
        if let Some(at) = &n.sent_at {
            let _ = write!(out, ", sent {}", local_time(at, tz));
        }
        if let Some(e) = &n.error {
            let _ = write!(out, ", error: {e}");
        }
        out.push('\n');
    }

    let _ = writeln!(out, "\nprocessed-mail log ({} entries)", s.history.len());
    for l in &s.history {
        let _ = writeln!(
            out,
            "  {:>6}  {}  {:<20} {}",
            l.seq,
            local_time(&l.at, tz),
            l.event,
            summary(l)
        );
    }

    out.push_str("\nfacts extracted\n");
    let facts = serde_json::to_string_pretty(&s.facts).unwrap_or_default();
    for line in facts.lines() {
        let _ = writeln!(out, "  {line}");
    }

    out.push_str("\nraw headers\n");
    match &s.headers {
        Some(h) => {
            for line in h.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None => out.push_str("  (not kept)\n"),
    }
    out
}

/// The decision trace as `audit show` prints it: the rule files that returned `()`, the one that decided, how the
/// client was found, and where each deadline comes from.
pub fn render_trace(trace: &serde_json::Value) -> String {
    let mut out = String::from("\ntrace\n");
    if let Some(e) = trace["error"].as_str() {
        let _ = writeln!(out, "  failed:      {e}");
        return out;
    }
    let passed: Vec<&str> = trace["passed"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let passed = if passed.is_empty() {
        "(none)".to_owned()
    } else {
        passed.join(", ")
    };
    let _ = writeln!(out, "  returned (): {passed}");
    let _ = writeln!(
        out,
        "  decided by:  {}",
        trace["decided"]
            .as_str()
            .unwrap_or("(no rule: unclassified)")
    );
    let _ = writeln!(
        out,
        "  client:      {} (from {})",
        trace["client"].as_str().unwrap_or("-"),
        trace["client_from"].as_str().unwrap_or("?")
    );
    for d in trace["deadlines"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  deadline:    {} {} ← {}",
            d["step"].as_str().unwrap_or("?"),
            d["due"].as_str().unwrap_or("?"),
            d["provenance"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_decoded_for_reading() {
        let raw = b"From: =?utf-8?B?0JjQpNCd0KE=?= <ifns@example.org>\r\n\
            Subject: =?utf-8?B?0KLRgNC10LHQvtCy0LDQvdC40LU=?=\r\n =?utf-8?B?IOKEliA3MDA2?=\r\n\
            X-Folded: one\r\n two\r\n\r\nbody";
        let headers = decoded_headers(raw);
        assert_eq!(
            headers,
            vec![
                ("From".to_owned(), "ИФНС <ifns@example.org>".to_owned()),
                ("Subject".to_owned(), "Требование № 7006".to_owned()),
                ("X-Folded".to_owned(), "one two".to_owned()),
            ]
        );
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        let raw = b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n\r\nmore";
        assert_eq!(header_block(raw), "From: a@b.example\nSubject: x");
    }
}

//! The processed-mail log as auditors use it: `taxinbox audit log | show | export | verify | purge`.
//!
//! Every command but `purge` opens the database read-only ([`Store::connect_read_only`]): an auditor's role may
//! only `SELECT`, and nothing an auditor runs can change what is audited. The chain itself is written in `store`;
//! this module gathers, checks and prints. `verify` checks three things and names the first bad entry: the hash
//! chain, every stored raw mail against its SHA-256 (a purged one must be named by a purge entry), and every
//! mail's stored decision against the newest log entry about it.
//!
//! Retention: after `[audit] retention_days` the raw bytes of a mail may be purged (`audit purge`, which the
//! daemon also runs once a day); the hash and size stay, the purge is an entry itself, so the log stays provable.

use crate::cli::App;
use crate::settings::{AuditSettings, Settings};
use crate::store::{self, Store};
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The log, entry by entry, oldest first; filters select entries about matching mail.
    Log {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: LogFormat,
    },
    /// The whole story of one mail: raw headers, facts, decision, tasks, notifications, every log entry.
    Show {
        /// Message id (as `audit log`, `audit export` and `ingest --format jsonl` show it).
        id: i64,
    },
    /// One row per mail: a CSV that opens in a spreadsheet, or JSON lines.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Check the hash chain, the stored raw mail and the stored decisions; names the first bad entry.
    Verify,
    /// Empty the raw content of mail older than `[audit] retention_days` (hashes stay); logged as an entry.
    Purge {
        /// Say what would be purged, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which mail `audit log` and `audit export` are about. Mail filters apply to a mail's current state.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// From this date (YYYY-MM-DD, inclusive): the entry's date for `log`, the received date for `export`.
    #[arg(long, value_name = "DATE")]
    pub from: Option<NaiveDate>,
    /// Up to this date (YYYY-MM-DD, inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<NaiveDate>,
    /// Only mail of this client.
    #[arg(long, value_name = "INN")]
    pub client: Option<String>,
    /// Only mail of this category (tax_demand, client_request, ignore, unclassified, …).
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Only mail with this status (processed, linked, quarantined).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Settings and a store that cannot write: what every auditor command but `purge` starts from.
pub async fn open_read_only(config: Option<&Path>) -> anyhow::Result<(Settings, Store)> {
    let settings = Settings::load(config)?;
    let store = Store::connect_read_only(&settings.database.url).await?;
    Ok((settings, store))
}

pub async fn run(config: Option<&Path>, command: AuditCommand) -> anyhow::Result<ExitCode> {
    if let AuditCommand::Purge { dry_run } = command {
        let app = App::open(config).await?;
        let purged = purge_expired(&app.store, &app.settings.audit, Utc::now(), dry_run).await?;
        println!("{purged}");
        return Ok(ExitCode::SUCCESS);
    }
    let (settings, store) = open_read_only(config).await?;
    let tz = settings.general.timezone;
    let mut conn = store.acquire().await?;
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Log { filter, format } => {
            let lines = log_lines(&mut conn, &entry_filter(&filter, tz)).await?;
            match format {
                LogFormat::Jsonl => {
                    for line in &lines {
                        writeln!(out, "{}", serde_json::to_string(line)?)?;
                    }
                }
                LogFormat::Text => out.write_all(render_log(&lines, tz).as_bytes())?,
            }
        }
        AuditCommand::Show { id } => {
            let story = story(&mut conn, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no message with id {id}"))?;
            out.write_all(render_story(&story, tz).as_bytes())?;
        }
        AuditCommand::Export {
            format,
            output,
            filter,
        } => {
            let rows = export_rows(&mut conn, &mail_filter(&filter)).await?;
            let mut bytes = Vec::new();
            write_export(&mut bytes, format, &rows)?;
            match output {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("write {}", path.display()))?,
                None => out.write_all(&bytes)?,
            }
        }
        AuditCommand::Verify => {
            let verification = verify(&mut conn).await?;
            out.write_all(verification.to_string().as_bytes())?;
            if !verification.is_intact() {
                return Ok(ExitCode::from(2));
            }
        }
        AuditCommand::Purge { .. } => anyhow::bail!("audit purge writes: it is not run read-only"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Start of a local calendar day as a stored instant.
fn day_start(date: NaiveDate, tz: chrono_tz::Tz) -> String {
    let local = date.and_time(chrono::NaiveTime::MIN);
    let instant = tz
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local));
    store::timestamp(instant)
}

fn entry_filter(args: &FilterArgs, tz: chrono_tz::Tz) -> store::EntryFilter {
    store::EntryFilter {
        at_from: args.from.map(|d| day_start(d, tz)),
        at_before: args.to.and_then(|d| d.succ_opt()).map(|d| day_start(d, tz)),
        client: args.client.clone(),
        category: args.category.clone(),
        status: args.status.clone(),
    }
}

fn mail_filter(args: &FilterArgs) -> store::MailFilter {
    store::MailFilter {
        received_from: args.from.map(|d| d.to_string()),
        received_to: args.to.map(|d| d.to_string()),
        client: args.client.clone(),
        category: args.category.clone(),
        status: args.status.clone(),
        mailbox: None,
    }
}

// ---- log ----

/// One entry as `audit log --format jsonl` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub event: String,
    /// The mail the entry is about, if any.
    pub message: Option<i64>,
    /// SHA-256 of the raw mail the entry is about, if any.
    pub sha256: Option<String>,
    /// What the entry records, as written.
    pub payload: serde_json::Value,
    /// This entry's link in the chain.
    pub hash: String,
}

impl From<store::StoredEntry> for LogLine {
    fn from(e: store::StoredEntry) -> LogLine {
        LogLine {
            payload: serde_json::from_str(&e.payload)
                .unwrap_or(serde_json::Value::String(e.payload)),
            seq: e.seq,
            at: e.at,
            event: e.event,
            message: e.message,
            sha256: e.sha256,
            hash: e.hash,
        }
    }
}

pub async fn log_lines(
    conn: &mut sqlx::AnyConnection,
    filter: &store::EntryFilter,
) -> anyhow::Result<Vec<LogLine>> {
    Ok(store::log_entries(conn, filter)
        .await?
        .into_iter()
        .map(LogLine::from)
        .collect())
}

fn local_time(at: &str, tz: chrono_tz::Tz) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// One line saying what an entry records, for people.
pub fn summary(line: &LogLine) -> String {
    let p = &line.payload;
    match line.event.as_str() {
        "mail_processed" | "mail_linked" | "mail_quarantined" | "mail_reprocessed" => {
            let r = &p["report"];
            let status = text(&r["status"]).unwrap_or_default();
            let mut s = match line.event.as_str() {
                "mail_reprocessed" => format!("reprocessed → {status}"),
                _ => status.clone(),
            };
            if let Some(c) = text(&r["category"]) {
                let _ = write!(s, " {c}");
                if let Some(k) = text(&r["kind"]) {
                    let _ = write!(s, "/{k}");
                }
            }
            if let Some(inn) = text(&r["client_inn"]) {
                let _ = write!(s, " client {inn}");
            }
            if let Some(rule) = text(&r["rule"]) {
                let _ = write!(s, " by {rule}");
            }
            if let Some(reason) = text(&p["reason"]).filter(|r| !r.is_empty()) {
                let _ = write!(s, " ({reason})");
            }
            if let Some(joins) = text(&r["joins"]) {
                let _ = write!(s, " joins {joins}");
            }
            let tasks = r["tasks"].as_array().map(Vec::len).unwrap_or(0);
            if tasks > 0 {
                let _ = write!(s, ", {tasks} task(s)");
            }
            if let Some(error) = text(&r["error"]) {
                let _ = write!(s, ": {error}");
            }
            s
        }
        "notification_sent" | "notification_failed" => {
            let mut s = format!(
                "{} to {}",
                text(&p["kind"]).unwrap_or_default(),
                text(&p["recipient"]).unwrap_or_default()
            );
            if let Some(error) = text(&p["error"]) {
                let _ = write!(s, ": {error}");
            }
            s
        }
        "ruleset_loaded" => format!(
            "{} ({})",
            text(&p["version"]).unwrap_or_default(),
            p["files"]
                .as_array()
                .map(|f| f.iter().filter_map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        "directory_imported" => format!(
            "{} client(s), {} accountant(s), absences {}",
            text(&p["clients"]).unwrap_or_default(),
            text(&p["accountants"]).unwrap_or_default(),
            text(&p["absences"]).unwrap_or_else(|| "unchanged".into())
        ),
        store::RAW_MAIL_PURGED => format!(
            "raw content of {} mail(s) purged ({} bytes, stored before {}, retention {} days)",
            text(&p["count"]).unwrap_or_default(),
            text(&p["bytes"]).unwrap_or_default(),
            text(&p["stored_before"]).unwrap_or_default(),
            text(&p["retention_days"]).unwrap_or_default()
        ),
        _ => {
            let mut s = p.to_string();
            if s.chars().count() > 120 {
                s = s.chars().take(117).collect::<String>() + "...";
            }
            s
        }
    }
}

fn render_log(lines: &[LogLine], tz: chrono_tz::Tz) -> String {
    let mut out = format!(
        "{:>6}  {:<19}  {:<20}  {:>6}  {}\n",
        "entry", "at", "event", "mail", "what"
    );
    for line in lines {
        let _ = writeln!(
            out,
            "{:>6}  {:<19}  {:<20}  {:>6}  {}",
            line.seq,
            local_time(&line.at, tz),
            line.event,
            line.message.map(|m| m.to_string()).unwrap_or_default(),
            summary(line)
        );
    }
    let _ = writeln!(out, "{} entr(ies)", lines.len());
    out
}

// ---- show ----

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
    pub facts: serde_json::Value,
    pub status: String,
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
    pub status: String,
    pub provenance: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct StoryNotification {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub status: String,
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

pub async fn story(conn: &mut sqlx::AnyConnection, id: i64) -> anyhow::Result<Option<MailStory>> {
    let Some(m) = store::mail(conn, id).await? else {
        return Ok(None);
    };
    let (raw, headers) = match (m.raw_size, m.raw_kept) {
        (None, _) => (RawState::Missing, None),
        (Some(size), false) => (RawState::Purged { size }, None),
        (Some(size), true) => {
            let bytes = store::raw_mail(conn, &m.sha256).await?.unwrap_or_default();
            let matches_hash = crate::pipeline::sha256_hex(&bytes) == m.sha256;
            (
                RawState::Kept { size, matches_hash },
                Some(header_block(&bytes)),
            )
        }
    };
    let ruleset_recorded = match &m.ruleset {
        Some(v) => store::ruleset(conn, v)
            .await?
            .map(|r| format!("first run by the daemon {} with {}", r.loaded_at, r.files)),
        None => None,
    };
    let tasks = store::task_details(conn, id)
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

fn purged_hashes(payload: &serde_json::Value) -> BTreeSet<&str> {
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

// ---- export ----

/// One mail as `audit export` writes it (the JSONL contract; CSV flattens the tasks into aligned cells).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportRow {
    pub id: i64,
    /// ISO date.
    pub received: String,
    pub mailbox: String,
    pub from: String,
    pub subject: String,
    pub client_inn: Option<String>,
    pub client_name: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub rule: Option<String>,
    pub ruleset: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub tasks: Vec<ExportTask>,
    pub message_id: Option<String>,
    pub sha256: String,
    /// `kept`, `purged` or `missing`.
    pub raw_mail: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportTask {
    pub step: String,
    pub title: String,
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    pub status: String,
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 19] = [
    "id",
    "received",
    "mailbox",
    "from",
    "subject",
    "client_inn",
    "client",
    "category",
    "kind",
    "rule",
    "ruleset_version",
    "status",
    "reason",
    "tasks",
    "assignees",
    "due_dates",
    "message_id",
    "sha256",
    "raw_mail",
];

/// Separates the tasks of one mail inside a cell, as the register's CSV separates list items.
pub const LIST_SEPARATOR: &str = " | ";

pub async fn export_rows(
    conn: &mut sqlx::AnyConnection,
    filter: &store::MailFilter,
) -> anyhow::Result<Vec<ExportRow>> {
    let mails = store::mails(conn, filter).await?;
    let mut tasks: BTreeMap<i64, Vec<ExportTask>> = BTreeMap::new();
    for t in store::tasks_of_mails(conn, filter).await? {
        tasks.entry(t.message).or_default().push(ExportTask {
            step: t.step,
            title: t.title,
            assignee: t.assignee,
            due: t.due,
            status: t.status,
        });
    }
    Ok(mails
        .into_iter()
        .map(|m| ExportRow {
            tasks: tasks.remove(&m.id).unwrap_or_default(),
            raw_mail: match (m.raw_size, m.raw_kept) {
                (None, _) => "missing",
                (Some(_), true) => "kept",
                (Some(_), false) => "purged",
            },
            id: m.id,
            received: m.received_date,
            mailbox: m.mailbox,
            from: m.from_addr,
            subject: m.subject,
            client_inn: m.client_inn,
            client_name: m.client_name,
            category: m.category,
            kind: m.kind,
            rule: m.rule,
            ruleset: m.ruleset,
            status: m.status,
            reason: m.reason.or(m.error.clone()),
            error: m.error,
            message_id: m.message_id,
            sha256: m.sha256,
        })
        .collect())
}

/// A cell a spreadsheet shows as text: mail is written by strangers, and a subject such as `=HYPERLINK(…)` must
/// not become a formula in the auditor's spreadsheet (CSV injection), so such a cell gains a leading `'`.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// The export in `format`: what `audit export` writes and the web view's auditor downloads.
pub fn write_export(
    out: &mut impl std::io::Write,
    format: ExportFormat,
    rows: &[ExportRow],
) -> anyhow::Result<()> {
    match format {
        ExportFormat::Csv => write_csv(out, rows),
        ExportFormat::Jsonl => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
            Ok(())
        }
    }
}

/// CSV for spreadsheets: UTF-8 with a byte-order mark (so Excel reads Cyrillic right), a header row, one row per
/// mail; a mail's tasks, assignees and due dates are aligned lists in their cells.
pub fn write_csv(out: &mut impl std::io::Write, rows: &[ExportRow]) -> anyhow::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    let o = |s: &Option<String>| cell(s.as_deref().unwrap_or(""));
    for r in rows {
        let list = |f: &dyn Fn(&ExportTask) -> String| {
            r.tasks
                .iter()
                .map(|t| cell(&f(t)))
                .collect::<Vec<_>>()
                .join(LIST_SEPARATOR)
        };
        w.write_record([
            r.id.to_string(),
            cell(&r.received),
            cell(&r.mailbox),
            cell(&r.from),
            cell(&r.subject),
            o(&r.client_inn),
            o(&r.client_name),
            o(&r.category),
            o(&r.kind),
            o(&r.rule),
            o(&r.ruleset),
            cell(&r.status),
            o(&r.reason),
            list(&|t| format!("{}: {}", t.step, t.title)),
            list(&|t| t.assignee.clone().unwrap_or_else(|| "(unassigned)".into())),
            list(&|t| t.due.clone()),
            o(&r.message_id),
            cell(&r.sha256),
            r.raw_mail.to_owned(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

// ---- verify ----

/// One thing `audit verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The log entry at fault (the first one about the thing at fault), when there is one.
    pub seq: Option<i64>,
    pub problem: String,
}

/// What `audit verify` checked and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose links hold.
    pub entries: i64,
    /// The head of the chain: note it down; a later verify that shows an older head means the log was cut.
    pub head: Option<(i64, String)>,
    pub raw_checked: u64,
    pub raw_purged: u64,
    pub mails_checked: u64,
    /// Everything wrong, the first bad entry first.
    pub findings: Vec<Finding>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first bad entry, or the first problem no entry names.
    pub fn first_bad(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.first_bad() {
            None => writeln!(f, "processed-mail log intact: {} entries", self.entries)?,
            Some(Finding {
                seq: Some(seq),
                problem,
            }) => writeln!(f, "processed-mail log BROKEN at entry {seq}: {problem}")?,
            Some(Finding { seq: None, problem }) => {
                writeln!(f, "processed-mail log BROKEN: {problem}")?
            }
        }
        if let Some((seq, hash)) = &self.head {
            writeln!(f, "  head: entry {seq}, hash {hash}")?;
        }
        writeln!(
            f,
            "  raw mail: {} stored, {} purged after retention",
            self.raw_checked, self.raw_purged
        )?;
        writeln!(
            f,
            "  mail decisions compared with the log: {}",
            self.mails_checked
        )?;
        if self.findings.len() > 1 {
            writeln!(f, "  {} problem(s):", self.findings.len())?;
            for finding in self.findings.iter().take(MAX_FINDINGS_SHOWN) {
                match finding.seq {
                    Some(seq) => writeln!(f, "    entry {seq}: {}", finding.problem)?,
                    None => writeln!(f, "    {}", finding.problem)?,
                }
            }
            if self.findings.len() > MAX_FINDINGS_SHOWN {
                writeln!(
                    f,
                    "    … and {} more",
                    self.findings.len() - MAX_FINDINGS_SHOWN
                )?;
            }
        }
        Ok(())
    }
}

/// Enough problems to see a pattern; a wholesale edit would otherwise print thousands of lines.
const MAX_FINDINGS_SHOWN: usize = 20;

/// Raw mails read per query while checking their hashes.
const RAW_PAGE: i64 = 100;

/// Checks the chain, every stored raw mail against its hash, and every mail's stored decision against the newest
/// entry about it. Reads only.
pub async fn verify(conn: &mut sqlx::AnyConnection) -> anyhow::Result<Verification> {
    let mut v = Verification {
        entries: 0,
        head: None,
        raw_checked: 0,
        raw_purged: 0,
        mails_checked: 0,
        findings: vec![],
    };
    match store::verify_log(conn).await? {
        store::VerifyOutcome::Intact { entries } => {
            v.entries = entries;
            v.head = Some(store::log_head(conn).await?);
        }
        store::VerifyOutcome::Broken { seq, reason } => {
            v.entries = seq - 1;
            v.findings.push(Finding {
                seq: Some(seq),
                problem: reason,
            });
        }
    }
    check_raw_mail(conn, &mut v).await?;
    check_decisions(conn, &mut v).await?;
    // Stable: among problems of one entry the chain's own comes first.
    v.findings.sort_by_key(|f| f.seq.unwrap_or(i64::MAX));
    Ok(v)
}

async fn check_raw_mail(
    conn: &mut sqlx::AnyConnection,
    v: &mut Verification,
) -> anyhow::Result<()> {
    let purges = store::entries_with_event(conn, store::RAW_MAIL_PURGED).await?;
    let purge_payloads: Vec<serde_json::Value> = purges
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap_or_default())
        .collect();
    let purged: BTreeSet<&str> = purge_payloads.iter().flat_map(purged_hashes).collect();
    let mut bad: Vec<(String, String)> = Vec::new();
    let mut after = String::new();
    loop {
        let page = store::raw_mail_page(conn, &after, RAW_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.sha256.clone();
        for raw in page {
            v.raw_checked += 1;
            match &raw.content {
                None if purged.contains(raw.sha256.as_str()) => v.raw_purged += 1,
                None => bad.push((
                    raw.sha256,
                    "its raw mail's content is gone, but no purge entry names it".into(),
                )),
                Some(bytes) => {
                    let actual = hex::encode(Sha256::digest(bytes));
                    if actual != raw.sha256 {
                        bad.push((
                            raw.sha256,
                            "its raw mail was altered: the stored bytes do not match their SHA-256"
                                .into(),
                        ));
                    } else if i64::try_from(bytes.len()).ok() != Some(raw.size) {
                        bad.push((
                            raw.sha256,
                            format!(
                                "its raw mail's recorded size {} is not its {} bytes",
                                raw.size,
                                bytes.len()
                            ),
                        ));
                    }
                }
            }
        }
    }
    for sha in store::logged_hashes_without_raw_mail(conn).await? {
        bad.push((sha, "its raw mail was removed from the store".into()));
    }
    for (sha, problem) in bad {
        let seq = store::first_entry_with_sha(conn, &sha).await?;
        v.findings.push(Finding {
            seq,
            problem: format!("{problem} (sha256 {sha})"),
        });
    }
    Ok(())
}

async fn check_decisions(
    conn: &mut sqlx::AnyConnection,
    v: &mut Verification,
) -> anyhow::Result<()> {
    let latest = store::latest_mail_entries(conn).await?;
    for m in store::mails(conn, &store::MailFilter::default()).await? {
        v.mails_checked += 1;
        let Some(entry) = latest.get(&m.id) else {
            v.findings.push(Finding {
                seq: None,
                problem: format!("mail {} has no entry in the log", m.id),
            });
            continue;
        };
        let payload: serde_json::Value = serde_json::from_str(&entry.payload).unwrap_or_default();
        let report = &payload["report"];
        let logged = |field: &str| text(&report[field]);
        let mut differs = Vec::new();
        if entry.sha256.as_deref() != Some(m.sha256.as_str()) {
            differs.push(format!(
                "raw mail {} (the log says {})",
                m.sha256,
                entry.sha256.as_deref().unwrap_or("none")
            ));
        }
        for (field, stored) in [
            ("status", Some(m.status.clone())),
            ("category", m.category.clone()),
            ("kind", m.kind.clone()),
            ("client_inn", m.client_inn.clone()),
            ("rule", m.rule.clone()),
            ("ruleset", m.ruleset.clone()),
        ] {
            let said = logged(field);
            if said != stored {
                differs.push(format!(
                    "{field} {} (the log says {})",
                    stored.as_deref().unwrap_or("none"),
                    said.as_deref().unwrap_or("none")
                ));
            }
        }
        if !differs.is_empty() {
            v.findings.push(Finding {
                seq: Some(entry.seq),
                problem: format!(
                    "mail {} in the database disagrees with its entry: {}",
                    m.id,
                    differs.join(", ")
                ),
            });
        }
    }
    Ok(())
}

// ---- the daemon's part ----

/// Records the ruleset `taxinbox run` works with (`rulesets` table, and a `ruleset_loaded` entry when it changed).
pub async fn record_ruleset(
    store: &Store,
    rules: &crate::rules::Ruleset,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let files: Vec<&str> = rules.file_names().collect();
    let mut tx = store.begin().await?;
    store::record_ruleset(&mut tx, rules.version(), &files, &store::timestamp(now)).await?;
    tx.commit().await.context("record the ruleset")?;
    Ok(())
}

/// What a purge did, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    pub retention_days: Option<u32>,
    pub stored_before: Option<String>,
    pub purged: usize,
    pub bytes: i64,
    pub entries: Vec<i64>,
    pub dry_run: bool,
}

impl std::fmt::Display for PurgeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(days), Some(before)) = (self.retention_days, &self.stored_before) else {
            return write!(
                f,
                "audit.retention_days = 0: raw mail is kept forever, nothing purged"
            );
        };
        let verb = if self.dry_run {
            "would purge"
        } else {
            "purged"
        };
        write!(
            f,
            "{verb} the raw content of {} mail(s), {} bytes, stored before {before} (retention {days} days)",
            self.purged, self.bytes
        )?;
        if !self.entries.is_empty() {
            let entries: Vec<String> = self.entries.iter().map(i64::to_string).collect();
            write!(
                f,
                "; hashes kept, logged as entr(ies) {}",
                entries.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Empties the raw content of mail stored longer than the retention period before `now`, a batch per
/// transaction, each batch logged. Mail still in quarantine is kept.
pub async fn purge_expired(
    store: &Store,
    settings: &AuditSettings,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<PurgeSummary> {
    let Some(days) = settings.retention_days else {
        return Ok(PurgeSummary::default());
    };
    let cutoff = store::timestamp(now - chrono::Duration::days(i64::from(days)));
    let at = store::timestamp(now);
    let mut summary = PurgeSummary {
        retention_days: Some(days),
        stored_before: Some(cutoff.clone()),
        dry_run,
        ..PurgeSummary::default()
    };
    loop {
        let mut tx = store.begin().await?;
        let step = store::purge_raw_mail(&mut tx, &cutoff, days, &at, dry_run).await?;
        tx.commit().await.context("commit a purge of raw mail")?;
        summary.purged += step.purged;
        summary.bytes += step.bytes;
        summary.entries.extend(step.entry);
        if dry_run || step.purged == 0 {
            return Ok(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_a_spreadsheet_would_run_as_formulas_are_quoted() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("Требование № 12"), "Требование № 12");
        assert_eq!(cell("2026-03-02"), "2026-03-02");
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        let raw = b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n\r\nmore";
        assert_eq!(header_block(raw), "From: a@b.example\nSubject: x");
    }

    #[test]
    fn a_day_starts_at_local_midnight() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default();
        assert_eq!(
            day_start(d, chrono_tz::Europe::Moscow),
            "2026-03-01T21:00:00.000Z"
        );
    }
}

//! `taxinbox run`: the long-running service. Each pass takes what waits in every configured source through the
//! pipeline, then delivers queued notifications; `--once` makes one pass and prints a summary.
//!
//! The loop is thin: [`run_pass`] is the step, testable on its own; the loop adds only timing and shutdown.

mod systemd;
mod watch;

use crate::app::Instance;
use crate::ingest::{ingest, IngestOptions};
use crate::notify;
use crate::pipeline::batch::{Archive, Summary};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::Pipeline;
use crate::store;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How often the Maildir sources are looked at between passes.
const POLL_INTERVAL: Duration = Duration::from_secs(30);

/// How often raw mail past its retention period is purged: retention is counted in days.
const PURGE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long failed sign-ins are kept: far longer than the web view's rate-limit window (minutes), so the daily
/// purge never shortens a lock-out; each failure stays in the hash-chained log for good.
const LOGIN_FAILURES_KEPT: chrono::Duration = chrono::Duration::days(1);

/// The daily purge of the web view's state: sessions expired before `now`, failed sign-ins older than a day.
pub async fn purge_web_state(
    store: &store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<store::WebPurged> {
    let mut conn = store.acquire().await?;
    store::purge_web_sessions(
        &mut conn,
        &store::timestamp(now),
        &store::timestamp(now - LOGIN_FAILURES_KEPT),
    )
    .await
}

/// One pass: every Maildir's new mail, then the outbox.
pub async fn run_pass(
    app: &Instance,
    pipeline: &Pipeline,
) -> anyhow::Result<(Summary, notify::SendOutcome)> {
    run_pass_recording(app, pipeline, None).await
}

/// The log line of one committed mail, whatever its source: the fields an admin follows a mail by.
pub fn log_mail(source: &str, r: &crate::pipeline::Report) {
    tracing::info!(
        mailbox = %source,
        message_id = r.message_id.as_deref().unwrap_or(""),
        status = r.status.as_str(),
        category = r.category.as_deref().unwrap_or(""),
        client_inn = r.client_inn.as_deref().unwrap_or(""),
        rule = r.rule.as_deref().unwrap_or(""),
        tasks = r.tasks.len(),
        archived = r.archived,
        "mail processed"
    );
}

/// [`run_pass`], recording each Maildir's mail (per source and status) and its successful passes into `metrics`.
pub async fn run_pass_recording(
    app: &Instance,
    pipeline: &Pipeline,
    metrics: Option<&crate::metrics::Metrics>,
) -> anyhow::Result<(Summary, notify::SendOutcome)> {
    let mut total = Summary::default();
    for maildir in &app.settings.maildirs {
        let started = std::time::Instant::now();
        let inputs = match crate::source::maildir_new(&maildir.path) {
            Ok(inputs) => inputs,
            Err(e) => {
                if let Some(metrics) = metrics {
                    metrics.failed(&maildir.name, &format!("{e:#}"));
                }
                return Err(e);
            }
        };
        if !inputs.is_empty() {
            let options = IngestOptions {
                dry_run: false,
                batch_size: app.settings.ingest.batch_size,
                max_batch_bytes: MemoryBudget::configured(&app.settings.ingest).batch_bytes(),
                archive: maildir.archive_before.map_or(Archive::No, Archive::Before),
                mailbox: Some(maildir.name.clone()),
            };
            let summary = ingest(
                &app.store,
                pipeline,
                &inputs,
                &options,
                &chrono::Utc::now,
                |r| {
                    log_mail(&maildir.name, r);
                    if let Some(metrics) = metrics {
                        // Per mail: the batch's time from the first read to this mail's commit.
                        metrics.local_mail_committed(
                            &maildir.name,
                            r.status.as_str(),
                            r.tasks.len(),
                            r.archived,
                            started.elapsed(),
                        );
                    }
                },
            )
            .await?;
            merge(&mut total, summary);
        }
        if let Some(metrics) = metrics {
            metrics.polled(&maildir.name, chrono::Utc::now());
            metrics.set_state(&maildir.name, crate::metrics::MailboxState::Idle);
        }
    }
    crate::calendar::obligations::generate_today(
        &app.store,
        &app.settings.rules.dir,
        app.settings.general.timezone,
    )
    .await?; // idempotent: reads existing keys, writes only new tasks
    let notifier = notify::Notifier::from_settings(&app.settings)?;
    // Digests, escalations, admin notices: idempotent per day, task and rung, so every pass may ask.
    notify::schedule::schedule_today(
        &app.store,
        &app.settings,
        &notifier.templates,
        chrono::Utc::now(),
    )
    .await?;
    let sent = notifier
        .send_pending(&app.store, chrono::Utc::now())
        .await?;
    // Task events to the firm's tracker (webhook, Bitrix24), after the e-mail.
    notify::sink::deliver_pass(&app.store, &app.settings, chrono::Utc::now()).await?;
    if let Some(metrics) = metrics {
        metrics.backlog_changed();
    }
    // The log's head, once a day, outside the database.
    if let Some(path) = &app.settings.audit.anchor_file {
        let today = chrono::Utc::now()
            .with_timezone(&app.settings.general.timezone)
            .date_naive();
        let mut conn = app.store.acquire().await?;
        crate::audit::anchor::anchor_if_due(&mut conn, path, today).await?;
    }
    Ok((total, sent))
}

/// Queues an admin notice per raised mailbox alarm (once per mailbox and day); nothing when there is none.
async fn queue_mailbox_alarms(app: &Instance, alarms: &[(String, String)]) -> anyhow::Result<()> {
    if alarms.is_empty() || app.settings.notify.admins.is_empty() {
        return Ok(());
    }
    let templates = crate::templates::Templates::load(&app.settings.rules.dir.join("templates"))?;
    let now = chrono::Utc::now();
    let today = now
        .with_timezone(&app.settings.general.timezone)
        .date_naive();
    let mut conn = app.store.acquire().await?;
    notify::schedule::mailbox_alarm_notices(
        &mut conn,
        &templates,
        &app.settings.notify.admins,
        alarms,
        today,
        &store::timestamp(now),
    )
    .await?;
    Ok(())
}

fn merge(total: &mut Summary, s: Summary) {
    for (k, v) in s.by_status {
        *total.by_status.entry(k).or_default() += v;
    }
    for (k, v) in s.tasks_by_assignee {
        *total.tasks_by_assignee.entry(k).or_default() += v;
    }
    total.archived_mails += s.archived_mails;
    total.archived_tasks += s.archived_tasks;
    total.quarantined.extend(s.quarantined);
    total.unreadable.extend(s.unreadable);
}

pub async fn run(config: Option<&Path>, once: bool) -> anyhow::Result<ExitCode> {
    // SIGTERM and Ctrl-C are caught from the first moment: one arriving during start-up or in the middle of a pass
    // is kept and ends the daemon cleanly after the pass in hand (leases released), never by the default action.
    let signalled = shutdown_signal();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signalled.await;
        let _ = stop_tx.send(true);
    });
    let app = Instance::open(config).await?;
    // A webhook URL kept in a file or the environment is checked now, not at the first event.
    notify::sink::check_urls(&app.settings.sinks)?;
    if let Some(clients) = &app.settings.directory.clients {
        let imported = crate::directory_import::import_files(
            &app.store,
            clients,
            app.settings.directory.accountants.as_deref(),
            app.settings.directory.absences.as_deref(),
            app.settings.directory.patents.as_deref(),
        )
        .await?;
        tracing::info!("{imported}");
    }
    let pipeline = app.pipeline().await?;
    tracing::info!(ruleset = %pipeline.rules.version(), "rules loaded");
    crate::pipeline::reload::record_ruleset(
        &app.store,
        &pipeline.rules.snapshot(),
        chrono::Utc::now(),
    )
    .await?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    metrics.attach_store(app.store.clone(), app.settings.general.timezone);
    register_sources(&metrics, &app.settings);
    // What the rules decide with — the directory (its generation), demands.toml, the production calendars — is
    // versioned and recorded now, so that later reloads compare against it (and /healthz shows it).
    let reloader = crate::pipeline::reload::Reloader::new(&pipeline, &app.settings)
        .with_metrics(metrics.clone());
    reloader
        .reload_and_log(&app.store, chrono::Utc::now())
        .await;
    // Hot reload (not for --once): a change of the rule files, demands.toml or the production calendars, a
    // `directory import` (the directory generation) or SIGHUP swaps the rules and their context for every clone of
    // the pipeline (each mailbox task's) and wakes the loop, so waiting Maildir mail is taken under what is in force.
    let rules_changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let rules_watch =
        (!once).then(|| watch::watch(reloader, app.store.clone(), rules_changed.clone()));
    let mut next_purge = std::time::Instant::now();
    // Several instances may share a PostgreSQL store: each mailbox is worked under a lease held by one of them.
    let lease = crate::imap::Lease::for_this_process();
    // The endpoint serves the long-running daemon only; a --once run is over before anyone would scrape it.
    let http = if once {
        None
    } else {
        // The web view shares the live pipeline: a hot reload reaches its reprocess button and playground too.
        let web = crate::web::Web::new(
            app.store.clone(),
            app.settings.clone(),
            pipeline.clone(),
            metrics.clone(),
        );
        Some(
            crate::http::Server::start_with(
                app.settings.http.listen,
                app.settings.http.status_listen,
                metrics.clone(),
                Some(web),
                crate::http::ConnectionLimits::from(&app.settings.http),
            )
            .await?,
        )
    };
    // IMAP: with --once one pass per mailbox now (its notifications go out with run_pass's outbox); otherwise one
    // supervised task per mailbox for as long as the daemon runs.
    let (mut imap_once, mailbox_tasks) = if once {
        (poll_mailboxes_once(&app, &pipeline, &lease).await, None)
    } else {
        (
            MailboxesOnce::default(),
            Some(MailboxTasks::start(&app, &pipeline, &lease, &metrics)),
        )
    };
    if !once {
        // Everything that can refuse to start (settings, the register, the rules, the listeners) has started.
        systemd::ready(&format!(
            "running: {} mailbox(es), {} Maildir(s)",
            app.settings.mailboxes.len(),
            app.settings.maildirs.len()
        ));
    }
    loop {
        if std::time::Instant::now() >= next_purge {
            next_purge = std::time::Instant::now() + PURGE_INTERVAL;
            // A failed purge costs disk space, not mail: it is retried tomorrow while mail keeps flowing.
            match crate::audit::purge_expired(
                &app.store,
                &app.settings.audit,
                chrono::Utc::now(),
                false,
            )
            .await
            {
                Ok(purged) if purged.purged > 0 => tracing::info!("{purged}"),
                Ok(_) => {}
                Err(e) => tracing::error!("purge of raw mail past its retention failed: {e:#}"),
            }
            match purge_web_state(&app.store, chrono::Utc::now()).await {
                Ok(purged) if purged != store::WebPurged::default() => tracing::info!(
                    sessions = purged.sessions,
                    login_failures = purged.login_failures,
                    "expired web sessions and old failed sign-ins purged"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!("purge of expired web sessions failed: {e:#}"),
            }
        }
        // A `directory import` since the last look: this pass decides with the directory now stored.
        crate::pipeline::reload::check_directory(
            &pipeline.rules,
            &app.store,
            Some(&metrics),
            chrono::Utc::now(),
        )
        .await;
        // A mailbox whose alarm is raised: the admins hear of it (once a day), sent with this pass's outbox.
        if let Err(e) = queue_mailbox_alarms(&app, &metrics.alarms()).await {
            tracing::error!("queueing the mailbox alarm notices failed: {e:#}");
        }
        let pass_started = std::time::Instant::now();
        let pass = run_pass_recording(&app, &pipeline, Some(&metrics)).await;
        if let Ok((summary, sent)) = &pass {
            log_pass(summary, sent, pass_started.elapsed());
        }
        if once {
            let (mut summary, sent) = pass?;
            merge(&mut summary, std::mem::take(&mut imap_once.summary));
            print!("{}", summary.render(false));
            println!(
                "notifications delivered: {}, failed: {}",
                sent.sent, sent.failed
            );
            print_open_tasks(&app, config).await?;
            for (mailbox, error) in &imap_once.failed {
                eprintln!("mailbox {mailbox} failed: {error}");
            }
            for mailbox in &imap_once.busy {
                eprintln!("mailbox {mailbox}: worked by another running instance, passed over");
            }
            return Ok(if imap_once.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        // The daemon outlives a failed pass (a locked or unreachable database, a full disk): the mailbox tasks go
        // on, and the next pass retries what this one left.
        if let Err(e) = pass {
            tracing::error!(
                "pass failed, retried in {} s: {e:#}",
                POLL_INTERVAL.as_secs()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = rules_changed.notified() => {}
            _ = stop_rx.wait_for(|stop| *stop) => {
                tracing::info!("shutting down");
                systemd::stopping();
                if let Some(watch) = rules_watch {
                    watch.stop().await;
                }
                if let Some(tasks) = mailbox_tasks {
                    tasks.stop().await;
                }
                if let Some(http) = http {
                    http.stop().await;
                }
                app.store.close().await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Names every configured source in `metrics` (so `/healthz` lists each from the start): the IMAP mailboxes, the
/// Maildirs, and stdin (mail an MTA hands to `taxinbox ingest -`, stored under the source name `stdin`).
pub fn register_sources(metrics: &crate::metrics::Metrics, settings: &crate::settings::Settings) {
    use crate::metrics::SourceKind;
    for mailbox in &settings.mailboxes {
        metrics.register_source(&mailbox.name, SourceKind::Imap);
    }
    for maildir in &settings.maildirs {
        metrics.register_source(&maildir.name, SourceKind::Maildir);
    }
    metrics.register_source("stdin", SourceKind::Stdin);
}

/// The one line of a pass over the local sources and the outbox (IMAP mailboxes log their own passes).
fn log_pass(summary: &Summary, sent: &notify::SendOutcome, took: Duration) {
    let count = |status: &str| summary.by_status.get(status).copied().unwrap_or(0);
    tracing::info!(
        mails = summary.total(),
        processed = count("processed"),
        linked = count("linked"),
        duplicate = count("duplicate"),
        quarantined = count("quarantined"),
        archived = summary.archived_mails,
        tasks = summary.tasks_by_assignee.values().sum::<usize>(),
        unreadable = summary.unreadable.len(),
        notifications_sent = sent.sent,
        notifications_failed = sent.failed,
        notifications_retrying = sent.retrying,
        took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        "pass done"
    );
}

/// Registers the SIGTERM handler now (a signal delivered before the future is polled is not lost) and resolves on
/// SIGTERM or Ctrl-C.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        {
            let Some(mut term) = term else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What the store holds after a `run --once`, where it is, and what to do next: the part of the closing summary that
/// a newcomer reads to find their way (open tasks by origin, the overdue ones, per person; the database, the outbox;
/// the commands and the web view).
async fn print_open_tasks(app: &Instance, config: Option<&Path>) -> anyhow::Result<()> {
    let mut conn = app.store.acquire().await?;
    let tasks = store::list_tasks(
        &mut conn,
        &store::TaskFilter {
            open_only: true,
            ..Default::default()
        },
    )
    .await?;
    drop(conn);
    let today = chrono::Utc::now()
        .with_timezone(&app.settings.general.timezone)
        .date_naive()
        .to_string();
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &tasks {
        *per.entry(t.assignee.clone().unwrap_or_else(|| "(unassigned)".into()))
            .or_default() += 1;
    }
    let from_calendar = tasks.iter().filter(|t| t.message.is_none()).count();
    // ISO dates compare as text.
    let overdue = tasks.iter().filter(|t| t.due < today).count();
    let mut out = String::new();
    out.push_str(&format!(
        "open tasks in the store: {} ({} from mail, {} from the tax calendar; this run's and every earlier one's)\n",
        tasks.len(),
        tasks.len() - from_calendar,
        from_calendar
    ));
    if overdue > 0 {
        out.push_str(&format!(
            "  of them overdue (due before {today}): {overdue} — a legal term counts from the mail's date\n"
        ));
    }
    for (who, n) in per {
        out.push_str(&format!("  {who:<40} {n}\n"));
    }
    out.push_str(&format!(
        "results: the database {}",
        app.settings.database.redacted_url()
    ));
    if let crate::settings::NotifyTransport::File { dir } = &app.settings.notify.transport {
        out.push_str(&format!(
            ", notifications as .eml files in {}",
            dir.display()
        ));
    }
    out.push('\n');
    // The program as it was called (`./target/release/taxinbox` from scripts/run-sample): it need not be on PATH.
    let program = std::env::args()
        .next()
        .filter(|p| p.contains('/'))
        .unwrap_or_else(|| "taxinbox".to_owned());
    let command = match config {
        Some(c) => format!("{program} --config {}", c.display()),
        None => program,
    };
    out.push_str("next:\n");
    for (what, args) in [
        ("the overdue tasks:", "tasks --overdue".to_owned()),
        (
            "a web sign-in for someone:",
            "user set-password EMAIL".to_owned(),
        ),
        (
            "the daemon and its web view:",
            format!("run   (then http://{}/)", app.settings.http.listen),
        ),
        ("one mail's whole story:", "audit show ID".to_owned()),
    ] {
        out.push_str(&format!("  {what:<29} {command} {args}\n"));
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}

/// What `run --once` did with the IMAP mailboxes.
#[derive(Debug, Default)]
pub struct MailboxesOnce {
    pub summary: Summary,
    /// Mailboxes whose pass failed, with the error; the others were worked all the same.
    pub failed: Vec<(String, crate::imap::Error)>,
    /// Mailboxes passed over because another running instance holds their lease (it works them).
    pub busy: Vec<String>,
}

/// One pass over every configured IMAP mailbox, one after the other, each under `lease` (taken before, released
/// after); a failing mailbox never stops the others, a mailbox another instance works is passed over.
pub async fn poll_mailboxes_once(
    app: &Instance,
    pipeline: &Pipeline,
    lease: &crate::imap::Lease,
) -> MailboxesOnce {
    let mut out = MailboxesOnce::default();
    let ctx = crate::imap::PollContext {
        lease: Some(lease),
        budget: MemoryBudget::configured(&app.settings.ingest),
        keep_reports: false,
        ..crate::imap::PollContext::new(&app.store, pipeline, app.settings.ingest.batch_size)
    };
    for mailbox in &app.settings.mailboxes {
        let held = async {
            let mut conn = app.store.acquire().await?;
            lease
                .take(&mut conn, &mailbox.name, chrono::Utc::now())
                .await
        };
        match held.await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(mailbox = %mailbox.name, "another instance works this mailbox: passed over");
                out.busy.push(mailbox.name.clone());
                continue;
            }
            Err(e) => {
                out.failed.push((
                    mailbox.name.clone(),
                    crate::imap::Error::store(&mailbox.name, e),
                ));
                continue;
            }
        }
        // What was committed is reported even when a later step (the acknowledgement, a later batch) failed.
        let (outcome, error) = crate::imap::poll_mailbox_once_reporting(&ctx, mailbox).await;
        merge(&mut out.summary, outcome.summary);
        match (error, outcome.ack_error) {
            (Some(e), _) => out.failed.push((mailbox.name.clone(), e)),
            (None, Some(reason)) => out.failed.push((
                mailbox.name.clone(),
                crate::imap::Error::Server {
                    mailbox: mailbox.name.clone(),
                    reason: format!(
                        "committed mail could not be acknowledged (it stays in the folder): {reason}"
                    ),
                },
            )),
            (None, None) => {}
        }
        lease.release(&app.store, &mailbox.name).await;
    }
    out
}

/// How long shutdown waits for a mailbox to finish the batch in hand and leave IDLE.
const MAILBOX_SHUTDOWN_GRACE: Duration = Duration::from_secs(120);
/// A mailbox task that panics (a bug) is restarted this many times before it is given up.
const MAILBOX_MAX_RESTARTS: u32 = 5;

/// The daemon's IMAP tasks, one per mailbox, and the flag that stops them.
pub struct MailboxTasks {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<(String, tokio::task::JoinHandle<crate::imap::MailboxEnd>)>,
}

impl MailboxTasks {
    /// Starts one supervised task per configured mailbox, each working its mailbox under `lease` and recording
    /// into `metrics`.
    pub fn start(
        app: &Instance,
        pipeline: &Pipeline,
        lease: &crate::imap::Lease,
        metrics: &std::sync::Arc<crate::metrics::Metrics>,
    ) -> MailboxTasks {
        start_mailboxes(app, pipeline, lease, metrics)
    }
}

fn start_mailboxes(
    app: &Instance,
    pipeline: &Pipeline,
    lease: &crate::imap::Lease,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> MailboxTasks {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // One budget for every mailbox: the mail in flight of them all stays under `ingest.memory_mb`.
    let budget = MemoryBudget::configured(&app.settings.ingest);
    let mut tasks = Vec::new();
    for mailbox in &app.settings.mailboxes {
        let (store, pipeline, mailbox, rx) = (
            app.store.clone(),
            pipeline.clone(),
            mailbox.clone(),
            stop_rx.clone(),
        );
        let (lease, metrics) = (lease.clone(), metrics.clone());
        let batching = crate::imap::Batching {
            size: app.settings.ingest.batch_size,
            budget: budget.clone(),
        };
        let name = mailbox.name.clone();
        let supervised = async move {
            let mut restarts = 0;
            loop {
                let task = tokio::spawn(crate::imap::run_mailbox(
                    store.clone(),
                    pipeline.clone(),
                    mailbox.clone(),
                    batching.clone(),
                    lease.clone(),
                    metrics.clone(),
                    rx.clone(),
                ));
                match task.await {
                    Ok(end) => return end,
                    Err(e) if restarts < MAILBOX_MAX_RESTARTS && !*rx.borrow() => {
                        restarts += 1;
                        tracing::error!(mailbox = %mailbox.name, restarts, "mailbox task failed, restarting: {e}");
                        tokio::time::sleep(crate::imap::backoff_delay(restarts)).await;
                    }
                    Err(e) => {
                        return crate::imap::MailboxEnd::Stopped(crate::imap::Error::Server {
                            mailbox: mailbox.name.clone(),
                            reason: format!("task failed {restarts} times, given up: {e}"),
                        })
                    }
                }
            }
        };
        tasks.push((name, tokio::spawn(supervised)));
    }
    MailboxTasks { stop, tasks }
}

impl MailboxTasks {
    /// Asks every mailbox to stop after the mail in hand (each releases its lease) and reports how each ended.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            match tokio::time::timeout(MAILBOX_SHUTDOWN_GRACE, task).await {
                Ok(Ok(crate::imap::MailboxEnd::Shutdown)) => {
                    tracing::info!(mailbox = %name, "mailbox stopped")
                }
                // Its error was logged when it stopped.
                Ok(Ok(crate::imap::MailboxEnd::Stopped(_))) => {}
                Ok(Err(e)) => tracing::error!(mailbox = %name, "mailbox task failed: {e}"),
                Err(_) => tracing::warn!(mailbox = %name, "mailbox did not stop in time"),
            }
        }
    }
}

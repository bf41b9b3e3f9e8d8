//! `taxinbox run`: the long-running service. Each pass takes what waits in every configured source through the
//! pipeline, then delivers queued notifications; `--once` makes one pass and prints a summary.
//!
//! The loop is thin: [`run_pass`] is the step, testable on its own; the loop adds only timing and shutdown.

use crate::cli::{self, App};
use crate::ingest::{ingest, IngestOptions, Summary};
use crate::notify;
use crate::pipeline::Pipeline;
use crate::store;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How often the Maildir sources are looked at between passes.
const POLL_INTERVAL: Duration = Duration::from_secs(30);

/// How often raw mail past its retention period is purged: retention is counted in days.
const PURGE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// One pass: every Maildir's new mail, then the outbox.
pub async fn run_pass(
    app: &App,
    pipeline: &Pipeline,
) -> anyhow::Result<(Summary, notify::SendOutcome)> {
    let mut total = Summary::default();
    for maildir in &app.settings.maildirs {
        let inputs = crate::source::maildir_new(&maildir.path)?;
        if inputs.is_empty() {
            continue;
        }
        let options = IngestOptions {
            dry_run: false,
            batch_size: app.settings.ingest.batch_size,
        };
        let summary = ingest(&app.store, pipeline, &inputs, &options, &chrono::Utc::now, |r| {
            tracing::info!(mailbox = %maildir.name, message_id = r.message_id.as_deref().unwrap_or(""),
                status = r.status.as_str(), rule = r.rule.as_deref().unwrap_or(""), client_inn = r.client_inn.as_deref().unwrap_or(""),
                tasks = r.tasks.len(), "mail processed");
        })
        .await?;
        merge(&mut total, summary);
    }
    crate::calendar::command::generate_today(app).await?; // idempotent: reads existing keys, writes only new tasks
    let notifier = notify::Notifier::from_settings(&app.settings)?;
    // Digests, escalations, admin notices: idempotent per day, task and rung, so every pass may ask.
    notify::schedule::schedule_today(app, &notifier.templates, chrono::Utc::now()).await?;
    let sent = notifier
        .send_pending(&app.store, chrono::Utc::now())
        .await?;
    Ok((total, sent))
}

fn merge(total: &mut Summary, s: Summary) {
    for (k, v) in s.by_status {
        *total.by_status.entry(k).or_default() += v;
    }
    for (k, v) in s.tasks_by_assignee {
        *total.tasks_by_assignee.entry(k).or_default() += v;
    }
    total.quarantined.extend(s.quarantined);
    total.unreadable.extend(s.unreadable);
}

pub async fn run(config: Option<&Path>, once: bool) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    if let Some(clients) = &app.settings.directory.clients {
        let imported = crate::directory_import::import_files(
            &app.store,
            clients,
            app.settings.directory.accountants.as_deref(),
            app.settings.directory.absences.as_deref(),
        )
        .await?;
        tracing::info!("{imported}");
    }
    let pipeline = app.pipeline().await?;
    tracing::info!(ruleset = pipeline.rules.version(), "rules loaded");
    crate::audit::record_ruleset(&app.store, &pipeline.rules, chrono::Utc::now()).await?;
    let mut next_purge = std::time::Instant::now();
    // Several instances may share a PostgreSQL store: each mailbox is worked under a lease held by one of them.
    let lease = crate::imap::Lease::for_this_process();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    // The endpoint serves the long-running daemon only; a --once run is over before anyone would scrape it.
    let http = if once {
        None
    } else {
        Some(crate::http::Server::start(app.settings.http.listen, metrics.clone()).await?)
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
        }
        let pass = run_pass(&app, &pipeline).await;
        if once {
            let (mut summary, sent) = pass?;
            merge(&mut summary, std::mem::take(&mut imap_once.summary));
            cli::print_summary(&summary, false);
            println!(
                "notifications delivered: {}, failed: {}",
                sent.sent, sent.failed
            );
            print_open_tasks(&app).await?;
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
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
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

/// Open tasks per person in the whole store: what the firm's day looks like.
async fn print_open_tasks(app: &App) -> anyhow::Result<()> {
    let mut conn = app.store.acquire().await?;
    let tasks = store::list_tasks(
        &mut conn,
        &store::TaskFilter {
            open_only: true,
            ..Default::default()
        },
    )
    .await?;
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &tasks {
        *per.entry(t.assignee.clone().unwrap_or_else(|| "(unassigned)".into()))
            .or_default() += 1;
    }
    println!("open tasks in the store: {}", tasks.len());
    for (who, n) in per {
        println!("  {who:<40} {n}");
    }
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
    app: &App,
    pipeline: &Pipeline,
    lease: &crate::imap::Lease,
) -> MailboxesOnce {
    let mut out = MailboxesOnce::default();
    let ctx = crate::imap::PollContext {
        store: &app.store,
        pipeline,
        batch_size: app.settings.ingest.batch_size,
        clock: &chrono::Utc::now,
        stop: None,
        lease: Some(lease),
        metrics: None,
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
        match crate::imap::poll_mailbox_once(&ctx, mailbox).await {
            Ok(outcome) => {
                for r in &outcome.reports {
                    add_report(&mut out.summary, r);
                }
            }
            Err(e) => out.failed.push((mailbox.name.clone(), e)),
        }
        lease.release(&app.store, &mailbox.name).await;
    }
    out
}

fn add_report(summary: &mut Summary, r: &crate::pipeline::Report) {
    *summary
        .by_status
        .entry(r.status.as_str().to_owned())
        .or_default() += 1;
    for t in &r.tasks {
        *summary
            .tasks_by_assignee
            .entry(t.assignee.clone().unwrap_or_default())
            .or_default() += 1;
    }
    if r.status == crate::pipeline::Status::Quarantined {
        summary
            .quarantined
            .push((r.source.clone(), r.error.clone().unwrap_or_default()));
    }
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
        app: &App,
        pipeline: &Pipeline,
        lease: &crate::imap::Lease,
        metrics: &std::sync::Arc<crate::metrics::Metrics>,
    ) -> MailboxTasks {
        start_mailboxes(app, pipeline, lease, metrics)
    }
}

fn start_mailboxes(
    app: &App,
    pipeline: &Pipeline,
    lease: &crate::imap::Lease,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> MailboxTasks {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for mailbox in &app.settings.mailboxes {
        let (store, pipeline, mailbox, rx) = (
            app.store.clone(),
            pipeline.clone(),
            mailbox.clone(),
            stop_rx.clone(),
        );
        let (lease, metrics) = (lease.clone(), metrics.clone());
        let batch_size = app.settings.ingest.batch_size;
        let name = mailbox.name.clone();
        let supervised = async move {
            let mut restarts = 0;
            loop {
                let task = tokio::spawn(crate::imap::run_mailbox(
                    store.clone(),
                    pipeline.clone(),
                    mailbox.clone(),
                    batch_size,
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

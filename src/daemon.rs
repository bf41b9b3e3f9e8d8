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
    let delivery = notify::Delivery::from_settings(&app.settings.notify)?;
    let sent = notify::send_pending(
        &app.store,
        &delivery,
        &app.settings.notify.from,
        chrono::Utc::now(),
    )
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
    loop {
        let (summary, sent) = run_pass(&app, &pipeline).await?;
        if once {
            cli::print_summary(&summary, false);
            println!(
                "notifications delivered: {}, failed: {}",
                sent.sent, sent.failed
            );
            print_open_tasks(&app).await?;
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
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

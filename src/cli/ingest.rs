//! `taxinbox ingest` and `taxinbox reprocess`: each mail's report as it commits (text or the JSONL contract), a
//! progress bar on a terminal, and the closing summary.

use super::Format;
use crate::app::Instance;
use crate::ingest::IngestOptions;
use crate::pipeline::batch::{Archive, Summary};
use crate::pipeline::{Pipeline, Report};
use crate::store;
use anyhow::Context as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

/// `taxinbox ingest [--archive] PATH…`: exits non-zero when an input could not be read (it is left in place).
pub async fn ingest(
    config: Option<&Path>,
    paths: &[String],
    dry_run: bool,
    archive: Archive,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    let pipeline = app.pipeline().await?;
    let inputs = crate::source::collect(paths)?;
    let summary = run_ingest(&app, &pipeline, &inputs, dry_run, archive, format).await?;
    if format == Format::Text {
        write!(std::io::stdout(), "{}", summary.render(dry_run))?;
    }
    Ok(if summary.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::DATA)
    })
}

/// `taxinbox reprocess`: the given (or every quarantined) message through the current rules, each in a transaction.
pub async fn reprocess(
    config: Option<&Path>,
    mut ids: Vec<i64>,
    quarantined: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    let pipeline = app.pipeline().await?;
    if quarantined {
        let mut conn = app.store.acquire().await?;
        ids.extend(
            store::message_ids_with_status(&mut conn, store::MessageStatus::Quarantined).await?,
        );
    }
    if ids.is_empty() {
        anyhow::bail!("nothing to reprocess: give message ids or --quarantined");
    }
    for id in ids {
        let mut tx = app.store.begin().await?;
        let report = pipeline.reprocess(&mut tx, id, chrono::Utc::now()).await?;
        tx.commit().await?;
        print_report(&report, format)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ingests with the output the command line promises: each report as it commits, a progress bar on a terminal.
pub async fn run_ingest(
    app: &Instance,
    pipeline: &Pipeline,
    inputs: &[crate::source::Input],
    dry_run: bool,
    archive: Archive,
    format: Format,
) -> anyhow::Result<Summary> {
    let bar = if std::io::stderr().is_terminal() && inputs.len() > 50 {
        let bar = indicatif::ProgressBar::new(inputs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} mails, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let options = IngestOptions {
        dry_run,
        batch_size: app.settings.ingest.batch_size,
        max_batch_bytes: crate::pipeline::budget::MemoryBudget::configured(&app.settings.ingest)
            .batch_bytes(),
        archive,
        mailbox: None,
    };
    let mut failed = None;
    let summary = crate::ingest::ingest(
        &app.store,
        pipeline,
        inputs,
        &options,
        &chrono::Utc::now,
        |r| {
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            if failed.is_none() {
                if let Err(e) = print_report(r, format) {
                    failed = Some(e);
                }
            }
        },
    )
    .await
    .context("ingest")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(summary)
}

fn print_report(r: &Report, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Text => {
            let what = match (&r.category, &r.kind) {
                (Some(c), Some(k)) => format!("{c}/{k}"),
                (Some(c), None) => c.clone(),
                _ => "-".into(),
            };
            write!(
                out,
                "{:<12} {:<36} {:<12}",
                r.status.as_str(),
                what,
                r.client_inn.as_deref().unwrap_or("-")
            )?;
            for t in &r.tasks {
                write!(
                    out,
                    " {}→{} {}",
                    t.step,
                    t.assignee.as_deref().unwrap_or("(unassigned)"),
                    t.due
                )?;
            }
            if let Some(j) = &r.joins {
                write!(out, " joins {j}")?;
            }
            if let Some(e) = &r.error {
                write!(out, " error: {e}")?;
            }
            writeln!(out, "  {}", r.source)?;
        }
    }
    Ok(())
}

//! The command-line contract (DESIGN.md): argument parsing and one function per command.

use crate::ingest::{ingest, IngestOptions, Summary};
use crate::pipeline::{Pipeline, Report};
use crate::rules::Limits;
use crate::settings::Settings;
use crate::store::{self, Store};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

/// taxinbox: tax-authority demands and client mail → tasks with legal deadlines.
#[derive(Debug, Parser)]
#[command(name = "taxinbox", version, about)]
pub struct Cli {
    /// Configuration file (default: taxinbox.toml in the working directory, if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: every configured source, then the notifier; `--once` processes what is waiting and exits.
    Run {
        #[arg(long)]
        once: bool,
    },
    /// Process .eml files, Maildir folders, plain folders of .eml, or `-` (one message on stdin).
    Ingest {
        /// Evaluate as if committed, then roll everything back: nothing stored, nothing acknowledged.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// The register of clients, accountants and absences.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// List tasks.
    Tasks {
        #[arg(long, value_name = "EMAIL")]
        assignee: Option<String>,
        /// Only open tasks past their due date.
        #[arg(long)]
        overdue: bool,
        /// Only tasks in the unassigned queue.
        #[arg(long)]
        unassigned: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Rule tooling for admins.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Run quarantined (or past) mail through the current rules again.
    Reprocess {
        /// Message ids (as `audit`/`ingest --format jsonl` show them).
        ids: Vec<i64>,
        /// Every quarantined message.
        #[arg(long)]
        quarantined: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// The processed-mail log.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
    /// The tax calendar: every client's obligations; `calendar generate` creates the tasks that are due.
    Calendar(crate::calendar::command::CalendarArgs),
    /// The firm's task trackers (`[[sinks]]`): `sinks status` (events by state, newest errors), `sinks retry`.
    Sinks {
        #[command(subcommand)]
        command: crate::notify::sink::SinksCommand,
    },
    /// People who sign in to the web view.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set the web password of a member of staff, admin or auditor; read from a prompt without echo, or from
    /// standard input when it is not a terminal (never from the command line).
    SetPassword {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Create or update clients (and accountants, absences) from CSV files; a bad row applies nothing of its file.
    Import {
        clients: PathBuf,
        #[arg(long, value_name = "ACCOUNTANTS.csv")]
        accountants: Option<PathBuf>,
        #[arg(long, value_name = "ABSENCES.csv")]
        absences: Option<PathBuf>,
    },
}

pub use crate::rules::tooling::RulesCommand;

impl Cli {
    pub fn parse_args() -> Cli {
        Cli::parse()
    }

    pub fn verbosity(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

/// Settings plus an open store: what every command starts from.
pub struct App {
    pub settings: Settings,
    pub store: Store,
}

impl App {
    pub async fn open(config: Option<&std::path::Path>) -> anyhow::Result<App> {
        let settings = Settings::load(config)?;
        let store = Store::connect(&settings.database.url).await?;
        // Events queued from now on (by this command too) reach exactly the configured task sinks.
        crate::notify::sink::register(&store, &settings.sinks, chrono::Utc::now()).await?;
        Ok(App { settings, store })
    }

    /// Loads the register, the calendars, the demand catalogue and the rules into a pipeline.
    pub async fn pipeline(&self) -> anyhow::Result<Pipeline> {
        let mut conn = self.store.acquire().await?;
        let directory = store::load_directory(&mut conn).await?;
        build_pipeline(&self.settings, directory)
    }
}

/// Builds the pipeline from the rules folder of `settings` and a register snapshot.
pub fn build_pipeline(
    settings: &Settings,
    directory: crate::directory::Directory,
) -> anyhow::Result<Pipeline> {
    let limits: Limits = settings.rules.limits.clone();
    let pipeline = Pipeline::load(
        &settings.rules.dir,
        &limits,
        directory,
        settings.general.timezone,
    )?;
    // Shadow mode (`rules.shadow_dir`): the candidate set rides along; a broken one is logged and stays off.
    crate::rules::live::attach_shadow(&pipeline, settings);
    Ok(pipeline)
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Ingest {
            dry_run,
            format,
            paths,
        } => {
            let app = App::open(config).await?;
            let pipeline = app.pipeline().await?;
            let inputs = crate::source::collect(&paths)?;
            let summary = run_ingest(&app, &pipeline, &inputs, dry_run, format).await?;
            if format == Format::Text {
                print_summary(&summary, dry_run);
            }
            Ok(if summary.unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run { once } => crate::daemon::run(config, once).await,
        Command::Directory {
            command:
                DirectoryCommand::Import {
                    clients,
                    accountants,
                    absences,
                },
        } => {
            let app = App::open(config).await?;
            let imported = crate::directory_import::import_files(
                &app.store,
                &clients,
                accountants.as_deref(),
                absences.as_deref(),
            )
            .await?;
            println!("{imported}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks {
            assignee,
            overdue,
            unassigned,
            format,
        } => {
            let app = App::open(config).await?;
            let mut conn = app.store.acquire().await?;
            let today = chrono::Utc::now()
                .with_timezone(&app.settings.general.timezone)
                .date_naive();
            let filter = store::TaskFilter {
                assignee,
                unassigned,
                due_before: overdue.then(|| today.to_string()),
                open_only: overdue,
            };
            let tasks = store::list_tasks(&mut conn, &filter).await?;
            let mut out = std::io::stdout().lock();
            for t in &tasks {
                match format {
                    Format::Jsonl => writeln!(out, "{}", serde_json::to_string(t)?)?,
                    Format::Text => writeln!(
                        out,
                        "{}  {:<11} {:<12} {:<34} {}",
                        t.due,
                        t.step,
                        t.client_inn.as_deref().unwrap_or("-"),
                        t.assignee.as_deref().unwrap_or("(unassigned)"),
                        t.title
                    )?,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules { command } => crate::rules::tooling::run(config, command).await,
        Command::Reprocess {
            ids,
            quarantined,
            format,
        } => {
            let app = App::open(config).await?;
            let pipeline = app.pipeline().await?;
            let mut ids = ids;
            if quarantined {
                let mut conn = app.store.acquire().await?;
                ids.extend(store::message_ids_with_status(&mut conn, "quarantined").await?);
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
        Command::Audit { command } => crate::audit::run(config, command).await,
        Command::Calendar(args) => crate::calendar::command::run(config, args).await,
        Command::User {
            command: UserCommand::SetPassword { email },
        } => {
            let app = App::open(config).await?;
            let password = read_password(&email)?;
            crate::web::set_password(&app, &email, &password).await?;
            println!("password set for {}", email.trim().to_lowercase());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sinks { command } => crate::notify::sink::run_command(config, command).await,
    }
}

/// A password from a prompt without echo on a terminal, else the first line of standard input.
fn read_password(email: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {email}: "))
            .context("read the password")?;
        let again = rpassword::prompt_password("Repeat it: ").context("read the password")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("read the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Ingests with the output the command line promises: each report as it commits, a progress bar on a terminal.
pub async fn run_ingest(
    app: &App,
    pipeline: &Pipeline,
    inputs: &[crate::source::Input],
    dry_run: bool,
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
    };
    let mut failed = None;
    let summary = ingest(
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

/// The closing summary a person reads: mail by status, tasks per accountant, the unassigned queue, quarantine.
pub fn print_summary(s: &Summary, dry_run: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "\n{} mail(s){}:",
        s.total(),
        if dry_run {
            " (dry run, nothing stored)"
        } else {
            ""
        }
    ));
    for (status, n) in &s.by_status {
        out.push_str(&format!(" {status} {n},"));
    }
    out.pop();
    out.push('\n');
    let assigned: Vec<_> = s
        .tasks_by_assignee
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .collect();
    if !assigned.is_empty() {
        out.push_str("tasks per person:\n");
        for (person, n) in assigned {
            out.push_str(&format!("  {person:<40} {n}\n"));
        }
    }
    out.push_str(&format!(
        "unassigned tasks: {}\n",
        s.tasks_by_assignee.get("").copied().unwrap_or(0)
    ));
    out.push_str(&format!("quarantined: {}\n", s.quarantined.len()));
    for (source, error) in &s.quarantined {
        out.push_str(&format!("  {source}: {error}\n"));
    }
    for (source, error) in &s.unreadable {
        out.push_str(&format!("unreadable (left in place): {source}: {error}\n"));
    }
    print!("{out}");
}

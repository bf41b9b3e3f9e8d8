//! The command-line contract (docs/cli.md): argument parsing, and one file per command family that runs the command
//! and prints. Nothing below `cli` prints for a command or knows its clap types.

mod audit;
mod backup;
mod calendar;
mod ingest;
mod mailboxes;
mod rules;
mod sinks;
mod tasks;
mod user;

use crate::app::Instance;

/// The exit codes of `taxinbox` (README "Exit codes"), after BSD's sysexits where one fits: a service manager can
/// tell a configuration error (do not restart) from a failure (restart).
pub mod exit {
    /// Something failed at run time (a server, the database): trying again may help.
    pub const FAILURE: u8 = 1;
    /// `audit verify`: the log's chain (or a raw mail, or a decision) does not verify.
    pub const AUDIT_NOT_INTACT: u8 = 3;
    /// The command line is wrong (EX_USAGE).
    pub const USAGE: u8 = 64;
    /// An input file is wrong: a CSV row, a mail that cannot be read (EX_DATAERR).
    pub const DATA: u8 = 65;
    /// The configuration (settings, rules, calendars, templates) is wrong (EX_CONFIG): restarting cannot help.
    pub const CONFIG: u8 = 78;

    /// The exit code for an error: by the first typed cause in its chain; a closed standard output is no error.
    pub fn of(error: &anyhow::Error) -> Option<u8> {
        for cause in error.chain() {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return None;
                }
            }
            if cause.is::<crate::settings::SettingsError>()
                || cause.is::<crate::rules::LoadError>()
                || cause.is::<crate::calendar::CalendarError>()
                || cause.is::<crate::evidence::VocabularyError>()
            {
                return Some(CONFIG);
            }
            if cause.is::<crate::directory::ImportError>() {
                return Some(DATA);
            }
        }
        Some(FAILURE)
    }
}
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
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

/// How a listing prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: aligned text and a summary.
    Text,
    /// For scripts: one JSON object per line (the contract of docs/formats.md).
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: every configured source, then the notifier; `--once` processes what is waiting and exits.
    Run {
        /// Make one pass over every source (IMAP, Maildir), send what is queued, print a summary and exit; no web
        /// view. Without it: run until SIGTERM, reload the rules on change and on SIGHUP.
        #[arg(long)]
        once: bool,
    },
    /// Process .eml files, Maildir folders, plain folders of .eml, or `-` (one message on stdin).
    Ingest {
        /// Evaluate as if committed, then roll everything back: nothing stored, nothing acknowledged.
        #[arg(long)]
        dry_run: bool,
        /// Import history: parsed, classified, logged and joined to cases as usual, but nobody is notified and
        /// nothing is pushed to the task sinks; its tasks are stored already done, marked archived.
        #[arg(long)]
        archive: bool,
        /// `text`: a line per mail and a summary; `jsonl`: one JSON object per mail (docs/formats.md).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// .eml files, Maildir folders (new/ and cur/), plain folders of .eml (file-name order), or `-` for one
        /// message on standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// The directory of clients, accountants and absences.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// List tasks.
    Tasks {
        /// Only the tasks of this person (their e-mail address in the register).
        #[arg(long, value_name = "EMAIL")]
        assignee: Option<String>,
        /// Only open tasks past their due date.
        #[arg(long)]
        overdue: bool,
        /// Only tasks in the unassigned queue.
        #[arg(long)]
        unassigned: bool,
        /// `text`: a table; `jsonl`: one JSON object per task (docs/formats.md).
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
        /// `text`: a line per mail and a summary; `jsonl`: one JSON object per mail, as `ingest` prints.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// The processed-mail log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The tax calendar: every client's obligations; `calendar generate` creates the tasks that are due.
    Calendar(calendar::CalendarArgs),
    /// The firm's task trackers (`[[sinks]]`): `sinks status` (events by state, newest errors, lost tasks), `sinks retry`,
    /// `sinks check` (Bitrix24 scopes and user mapping; read-only).
    Sinks {
        #[command(subcommand)]
        command: sinks::SinksCommand,
    },
    /// The IMAP mailboxes (`[[mailboxes]]`): `mailboxes check [NAME]` logs in and shows what the next run would take,
    /// changing nothing on the server.
    Mailboxes {
        #[command(subcommand)]
        command: mailboxes::MailboxesCommand,
    },
    /// A consistent copy of the SQLite store while the daemon runs (`VACUUM INTO`); for PostgreSQL use `pg_dump`.
    Backup {
        /// Where the copy goes; must not exist yet.
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
        /// A person of the register, or an address of `[web] admins` / `auditors`.
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// Deactivate a member of staff at once: sessions end, the calendar feed goes, open tasks go to each client's
    /// backup accountant or the unassigned queue (each move logged). Their history stays.
    Disable {
        /// A person of the register.
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// Make a deactivated member of staff active again (they set a new password and feed link).
    Enable {
        /// A deactivated person of the register.
        #[arg(value_name = "EMAIL")]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Import the register from CSV files; a bad row applies nothing of its file. The files are the whole register:
    /// clients missing from CLIENTS.csv, and (with --accountants) people missing from it, are deactivated — their
    /// sessions and feed end, their open tasks are handed over — unless --merge is given.
    Import {
        /// The clients: name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region and
        /// optionally attributes (docs/formats.md).
        #[arg(value_name = "CLIENTS.csv")]
        clients: PathBuf,
        /// Only create and update (for partial files); deactivate nobody.
        #[arg(long)]
        merge: bool,
        /// The staff: email,name,role,manager; people missing from it are deactivated (unless --merge).
        #[arg(long, value_name = "ACCOUNTANTS.csv")]
        accountants: Option<PathBuf>,
        /// Absences: email,from,to,substitute (dates inclusive; an empty substitute: each client's backup).
        #[arg(long, value_name = "ABSENCES.csv")]
        absences: Option<PathBuf>,
        /// Patents of clients on the patent system (`inn,number,from,to,region`): the whole truth about the
        /// patents of every holder it names.
        #[arg(long, value_name = "PATENTS.csv")]
        patents: Option<PathBuf>,
        /// The files' text encoding; detected when left out (valid UTF-8 is UTF-8, anything else windows-1251).
        #[arg(long, value_enum, value_name = "ENCODING")]
        encoding: Option<CsvEncoding>,
        /// The separator between cells, `,` or `;`; detected from each file's header line when left out.
        #[arg(long, value_parser = [",", ";"], value_name = "SEP")]
        delimiter: Option<String>,
    },
}

pub use rules::RulesCommand;

/// `directory import --encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CsvEncoding {
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    #[value(name = "windows-1251", alias = "cp1251")]
    Windows1251,
}

impl Cli {
    pub fn parse_args() -> Cli {
        Cli::parse()
    }

    /// The command line, or how to end: `--help`/`--version` print and end with 0, a usage error with
    /// [`exit::USAGE`].
    pub fn try_parse_args() -> Result<Cli, ExitCode> {
        Cli::try_parse().map_err(|e| {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            }
        })
    }

    /// The default log filter (`RUST_LOG` overrides it): the daemon tells what it does (one line per mail and per
    /// pass: taxinbox at info, its libraries at warn); other commands print their result and log only warnings.
    /// `-v` and `-vv` raise everything to info and debug.
    pub fn verbosity(&self) -> &'static str {
        match (self.verbose, &self.command) {
            (0, Command::Run { .. }) => "warn,taxinbox=info",
            (0, _) => "warn",
            (1, _) => "info",
            _ => "debug",
        }
    }
}

/// Runs the command, then closes every store it opened, whatever the outcome: the SQLite write-ahead log is folded
/// into the database file and removed, so the `.db` file alone is the whole store.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::app::closing_stores(run_command(cli)).await
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Ingest {
            dry_run,
            archive,
            format,
            paths,
        } => {
            let archive = if archive {
                crate::pipeline::batch::Archive::All
            } else {
                crate::pipeline::batch::Archive::No
            };
            ingest::ingest(config, &paths, dry_run, archive, format).await
        }
        Command::Run { once } => crate::daemon::run(config, once).await,
        Command::Directory {
            command:
                DirectoryCommand::Import {
                    clients,
                    merge,
                    accountants,
                    absences,
                    patents,
                    encoding,
                    delimiter,
                },
        } => {
            use crate::directory::{CsvFormat, TextEncoding};
            let format = CsvFormat {
                encoding: encoding.map(|e| match e {
                    CsvEncoding::Utf8 => TextEncoding::Utf8,
                    CsvEncoding::Windows1251 => TextEncoding::Windows1251,
                }),
                delimiter: delimiter
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e: String| anyhow::anyhow!(e))?,
            };
            let app = Instance::open(config).await?;
            let mode = if merge {
                crate::directory_import::Mode::Merge
            } else {
                crate::directory_import::Mode::Register
            };
            let files = crate::directory_import::RegisterFiles {
                clients: &clients,
                accountants: accountants.as_deref(),
                absences: absences.as_deref(),
                patents: patents.as_deref(),
            };
            let imported =
                crate::directory_import::import_files_with(mode, format, &app.store, files).await?;
            writeln!(std::io::stdout(), "{imported}")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks {
            assignee,
            overdue,
            unassigned,
            format,
        } => tasks::list(config, assignee, overdue, unassigned, format).await,
        Command::Rules { command } => rules::run(config, command).await,
        Command::Reprocess {
            ids,
            quarantined,
            format,
        } => ingest::reprocess(config, ids, quarantined, format).await,
        Command::Audit { command } => audit::run(config, command).await,
        Command::Calendar(args) => calendar::run(config, args).await,
        Command::User { command } => match command {
            UserCommand::SetPassword { email } => user::set_password(config, &email).await,
            UserCommand::Disable { email } => user::disable(config, &email).await,
            UserCommand::Enable { email } => user::enable(config, &email).await,
        },
        Command::Sinks { command } => sinks::run_command(config, command).await,
        Command::Backup { file } => backup::backup(config, &file).await,
        Command::Mailboxes { command } => mailboxes::run_command(config, command).await,
    }
}

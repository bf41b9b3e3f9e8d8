//! Rule tooling for admins: `taxinbox rules check` (compile and lint), `rules test` (fixtures as data, one
//! runner) and `rules replay` (what a candidate ruleset would decide differently on past mail).
//!
//! Everything here is a library function returning an outcome, so the tests drive exactly what the command runs;
//! the command only prints. Invariant: none of these writes anything — `replay` reads the store through a
//! read-only connection.

use super::{compile_file, read_sources, Decision, Limits, LoadError, RuleContext, Ruleset};
use crate::calendar::{DemandCatalog, ProductionCalendar};
use crate::directory::{Directory, Role};
use crate::pipeline::{number_key, Pipeline};
use crate::settings::Settings;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The categories the pipeline knows (DESIGN.md "Rhai rules"); anything else is a typo.
pub const CATEGORIES: [&str; 5] = [
    "tax_demand",
    "client_request",
    "notice",
    "ignore",
    "unclassified",
];

/// Client-request topics (tests/corpus/FORMAT.md): another topic is allowed but reported, since reports group by it.
pub const TOPICS: [&str; 8] = [
    "primary_documents",
    "invoice",
    "payroll",
    "hr",
    "legal",
    "tax_question",
    "reconciliation",
    "other",
];

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile every rule file and lint the decisions (statically, and on the fixtures of rules/tests);
    /// errors name file:line:col and exit non-zero.
    Check,
    /// Run the fixtures: rules/tests/<name>.eml beside <name>.expected.toml, against rules/tests/register/.
    Test {
        /// Fixture folder (default: `tests` in the rules folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Re-run stored mail received on or after DATE through a candidate ruleset and print the decisions that would
    /// change. Writes nothing.
    Replay {
        /// ISO date (YYYY-MM-DD): mail whose received date is on or after it.
        #[arg(long, value_name = "DATE")]
        since: NaiveDate,
        /// Candidate rules: a rules folder (with `mail/`) or a folder of `*.rhai` alone (default: the configured).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Print the live mails the shadow ruleset (`rules.shadow_dir`) decided differently from the live rules, live →
    /// shadow. Writes nothing.
    Shadow {
        /// ISO date (YYYY-MM-DD): mail committed on or after it (UTC); default: all.
        #[arg(long, value_name = "DATE")]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "text")]
        format: crate::cli::Format,
    },
}

/// `taxinbox rules …`.
pub async fn run(config: Option<&Path>, command: RulesCommand) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let limits = limits(&settings);
    let root = settings.rules.dir.clone();
    match command {
        RulesCommand::Check => {
            let report = check(&root, &limits, settings.general.timezone)?;
            print!("{report}");
            Ok(exit(report.errors() == 0))
        }
        RulesCommand::Test { dir } => {
            let dir = dir.unwrap_or_else(|| root.join("tests"));
            let run = run_fixtures(&root, &dir, &limits, settings.general.timezone)?;
            print!("{run}");
            Ok(exit(run.failed() == 0))
        }
        RulesCommand::Replay { since, rules } => {
            let store = crate::store::Store::connect_read_only(&settings.database.url).await?;
            let directory = {
                let mut conn = store.acquire().await?;
                crate::store::load_directory(&mut conn).await?
            };
            let pipeline = candidate_pipeline(
                &root,
                rules.as_deref(),
                &limits,
                directory,
                settings.general.timezone,
            )?;
            let outcome = replay(&store, &pipeline, since).await?;
            store.close().await;
            print!("{outcome}");
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Shadow { since, format } => {
            let store = crate::store::Store::connect_read_only(&settings.database.url).await?;
            let outcome = super::shadow::differences(&store, since).await;
            store.close().await;
            let outcome = outcome?;
            match format {
                crate::cli::Format::Text => print!("{outcome}"),
                crate::cli::Format::Jsonl => {
                    for d in &outcome.decisions {
                        println!("{}", serde_json::to_string(d)?);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The sandbox limits of the settings.
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        max_operations: settings.rules.max_operations,
        max_call_depth: settings.rules.max_call_depth,
        max_string_size: settings.rules.max_string_size,
        max_array_size: settings.rules.max_array_size,
        time_budget: settings.rules.time_budget,
    }
}

// ---- check ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem `rules check` found, where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {level}: {}", self.message)
    }
}

/// What `rules check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub files: usize,
    pub fixtures: usize,
    /// The ruleset version, when everything compiled.
    pub version: Option<String>,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn push(&mut self, severity: Severity, file: &str, line: Option<usize>, message: String) {
        self.findings.push(Finding {
            severity,
            file: file.to_owned(),
            line,
            column: None,
            message,
        });
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let verdict = if self.errors() == 0 {
            "rules OK"
        } else {
            "rules NOT OK"
        };
        write!(
            f,
            "{verdict}: {} file(s), {} error(s), {} warning(s), decisions linted on {} fixture(s)",
            self.files,
            self.errors(),
            self.warnings(),
            self.fixtures
        )?;
        if let Some(v) = &self.version {
            write!(f, ", version {v}")?;
        }
        writeln!(f)
    }
}

/// Compiles every file of `rules_dir/mail` (all of them, reporting every error, not only the first) and lints the
/// decisions: statically on the text of each file, and dynamically by running every rule file — each on its own,
/// not only the first that decides — on every fixture mail of `rules_dir/tests`.
pub fn check(
    rules_dir: &Path,
    limits: &Limits,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport::default();
    let mail_dir = rules_dir.join("mail");
    let demands_path = rules_dir.join("demands.toml");
    let demands = match DemandCatalog::load(&demands_path) {
        Ok(d) => Some(d),
        Err(e) => {
            report.push(Severity::Error, "demands.toml", None, e.to_string());
            None
        }
    };
    let calendar = match ProductionCalendar::load_dir(&rules_dir.join("calendar/production")) {
        Ok(c) => Some(c),
        Err(e) => {
            report.push(Severity::Error, "calendar/production", None, e.to_string());
            None
        }
    };
    let sources = match read_sources(&mail_dir) {
        Ok(s) => s,
        Err(e) => {
            report.push(
                Severity::Error,
                &mail_dir.display().to_string(),
                None,
                e.to_string(),
            );
            return Ok(report);
        }
    };
    report.files = sources.iter().filter(|(n, _)| !n.starts_with('_')).count();
    let vocabulary = demands.as_ref().and_then(|d| {
        crate::evidence::Vocabulary::load(rules_dir, &super::demand_titles(d))
            .map_err(|e| {
                use crate::evidence::VocabularyError as E;
                let (file, line, message) = match e {
                    E::Parse {
                        file,
                        line,
                        message,
                    } => (file, line, message),
                    E::Invalid { file, message } => (file, None, message),
                    other => (
                        "notices.toml, topics.toml".to_owned(),
                        None,
                        other.to_string(),
                    ),
                };
                report.push(Severity::Error, &file, line, message);
            })
            .ok()
    });
    let (Some(demands), Some(calendar), Some(vocabulary)) = (demands, calendar, vocabulary) else {
        return Ok(report);
    };
    let tests_dir = rules_dir.join("tests");
    let directory = if tests_dir.join("register").is_dir() {
        load_register(&tests_dir.join("register"))?
    } else {
        Directory::default()
    };
    let ctx = RuleContext {
        directory: Arc::new(directory),
        calendar: Arc::new(calendar),
        demands: Arc::new(demands),
        vocabulary: Arc::new(vocabulary),
    };

    let engine = super::build_engine(limits, &ctx);
    let mut compiled = true;
    for (name, text) in &sources {
        if let Err(LoadError::Script {
            file,
            line,
            column,
            message,
        }) = compile_file(&engine, name, text)
        {
            compiled = false;
            report.findings.push(Finding {
                severity: Severity::Error,
                file,
                line: Some(line),
                column: Some(column),
                message,
            });
        }
        lint_text(name, text, &ctx.demands, &mut report);
    }
    if report.files == 0 {
        report.push(
            Severity::Error,
            &mail_dir.display().to_string(),
            None,
            "no rule files (*.rhai not starting with `_`)".into(),
        );
    }
    if !compiled || report.files == 0 {
        return Ok(report);
    }
    let ruleset = match Ruleset::from_sources(&mail_dir, &sources, limits, &ctx) {
        Ok(r) => r,
        Err(e) => {
            report.push(Severity::Error, "mail", None, e.to_string());
            return Ok(report);
        }
    };
    report.version = Some(ruleset.version().to_owned());

    let fixtures = fixture_names(&tests_dir)?;
    report.fixtures = fixtures.len();
    if fixtures.is_empty() {
        report.push(
            Severity::Warning,
            "tests",
            None,
            format!(
                "no fixtures in {}: decisions were only linted statically (see rules/README.md, \"Testing rules\")",
                tests_dir.display()
            ),
        );
    }
    // One finding per problem, naming the fixtures it shows on, rather than one line per fixture.
    let mut dynamic: BTreeMap<(Severity, String, Option<usize>, String), Vec<String>> =
        BTreeMap::new();
    for name in &fixtures {
        let raw = std::fs::read(tests_dir.join(format!("{name}.eml")))
            .with_context(|| format!("read fixture {name}.eml"))?;
        let Ok(parsed) = crate::mail::parse(&raw) else {
            continue; // `rules test` reports a fixture that does not parse
        };
        let facts = crate::mail::extract(&parsed);
        let received = parsed
            .date
            .map(|d| d.with_timezone(&timezone).date_naive())
            .unwrap_or_default();
        let evidence = crate::evidence::assess(&ruleset.ctx().vocabulary, &parsed, &facts);
        let object = super::mail_object(&parsed, &facts, &evidence, received, "fixtures");
        for (file, result) in ruleset.run_each(&object) {
            let mut found = |severity, line, message| {
                dynamic
                    .entry((severity, file.clone(), line, message))
                    .or_default()
                    .push(format!("{name}.eml"));
            };
            match result {
                Err(failure) => found(Severity::Error, failure.line, failure.message),
                Ok(value) => match Decision::from_dynamic(value) {
                    Err(message) => found(Severity::Error, None, message),
                    Ok(None) => {}
                    Ok(Some(d)) => {
                        for (severity, message) in lint_decision(&d, &ctx.demands) {
                            found(severity, None, message);
                        }
                    }
                },
            }
        }
    }
    for ((severity, file, line, message), on) in dynamic {
        let shown = if on.len() > 3 {
            format!("{}, … ({} fixtures)", on[..3].join(", "), on.len())
        } else {
            on.join(", ")
        };
        report.findings.push(Finding {
            severity,
            file,
            line,
            column: None,
            message: format!("{message} (on {shown})"),
        });
    }
    report.findings.sort_by(|a, b| {
        (a.severity, &a.file, a.line, a.column).cmp(&(b.severity, &b.file, b.line, b.column))
    });
    Ok(report)
}

/// What a decision map may not say: an unknown category, demand kind or role. (Unknown keys and tasks without a
/// deadline are refused by [`Decision::from_dynamic`] itself.)
pub fn lint_decision(d: &Decision, demands: &DemandCatalog) -> Vec<(Severity, String)> {
    let mut out = Vec::new();
    if !CATEGORIES.contains(&d.category.as_str()) {
        out.push((
            Severity::Error,
            format!(
                "unknown category `{}` (known: {})",
                d.category,
                CATEGORIES.join(", ")
            ),
        ));
    }
    match (d.category.as_str(), d.kind.as_deref()) {
        ("tax_demand", None) => out.push((
            Severity::Warning,
            "a tax_demand without `kind` gets the tasks of kind `other`".into(),
        )),
        ("tax_demand", Some(kind)) if demands.kind(kind).is_none() => {
            out.push((Severity::Error, unknown_kind(kind, demands)))
        }
        ("client_request", Some(topic)) if !TOPICS.contains(&topic) => out.push((
            Severity::Warning,
            format!(
                "unknown client-request topic `{topic}` (known: {})",
                TOPICS.join(", ")
            ),
        )),
        _ => {}
    }
    for task in d.tasks.iter().flatten() {
        if task.role.parse::<Role>().is_err() {
            out.push((Severity::Error, unknown_role(&task.role, &task.step)));
        }
    }
    out
}

fn unknown_kind(kind: &str, demands: &DemandCatalog) -> String {
    let known: Vec<&str> = demands.kinds().map(|k| k.id.as_str()).collect();
    format!(
        "unknown demand kind `{kind}`: not in demands.toml (known: {})",
        known.join(", ")
    )
}

fn unknown_role(role: &str, step: &str) -> String {
    let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    format!(
        "task `{step}`: unknown role `{role}` (known: {})",
        known.join(", ")
    )
}

/// The static part of the lint: literal `category: "…"`, `role: "…"` and a `kind: "…"` written beside
/// `category: "tax_demand"` in the rule's text, each the whole value (`"tax_" + x` is computed). It sees only
/// literals; computed values are linted on the fixtures.
fn lint_text(file: &str, text: &str, demands: &DemandCatalog, report: &mut CheckReport) {
    static LITERAL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = LITERAL.get_or_init(|| {
        regex::Regex::new(r#"\b(category|role|kind)\s*:\s*"([^"]*)"\s*(?:[,}]|$)"#).ok()
    }) else {
        return;
    };
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let demand_line = code.contains(r#""tax_demand""#);
        for c in re.captures_iter(code) {
            let (Some(key), Some(value)) = (c.get(1), c.get(2)) else {
                continue;
            };
            let value_str = value.as_str();
            let message = match key.as_str() {
                "category" if !CATEGORIES.contains(&value_str) => format!(
                    "unknown category `{value_str}` (known: {})",
                    CATEGORIES.join(", ")
                ),
                "role" if value_str.parse::<Role>().is_err() => unknown_role(value_str, "…"),
                "kind" if demand_line && demands.kind(value_str).is_none() => {
                    unknown_kind(value_str, demands)
                }
                _ => continue,
            };
            report.findings.push(Finding {
                severity: Severity::Error,
                file: file.to_owned(),
                line: Some(i + 1),
                column: Some(code[..key.start()].chars().count() + 1),
                message,
            });
        }
    }
}

// ---- test: fixtures as data ----

/// `<name>.expected.toml`: what the rules must decide on `<name>.eml`. Absent optional keys mean "none" for
/// `kind`, `client_inn` and `rule`, and "not checked" for `demand` and `tasks`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub category: String,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    /// The rule file that decides; absent for mail no rule claims (`unclassified`).
    pub rule: Option<String>,
    pub demand: Option<ExpectedDemand>,
    pub tasks: Option<Vec<ExpectedTask>>,
    /// Free text for people reading the fixture; never checked.
    pub note: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDemand {
    pub number: Option<String>,
    pub date: Option<String>,
    pub sent: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedTask {
    pub step: String,
    pub due: String,
    pub role: Option<String>,
    /// An e-mail address; `""` for the unassigned queue; absent: not checked.
    pub assignee: Option<String>,
}

/// One fixture's result: passed when `problems` is empty.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    pub name: String,
    /// What the rules decided, in short (`tax_demand/documents 7728997898 by 20-demands.rhai`).
    pub got: String,
    pub problems: Vec<String>,
}

/// All fixtures of a folder, in file-name order.
#[derive(Debug, Clone, Default)]
pub struct FixtureRun {
    pub ruleset: String,
    pub results: Vec<FixtureResult>,
}

impl FixtureRun {
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| !r.problems.is_empty())
            .count()
    }
}

impl fmt::Display for FixtureRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .results
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        for r in &self.results {
            let verdict = if r.problems.is_empty() {
                "PASS"
            } else {
                "FAIL"
            };
            writeln!(f, "{verdict}  {:<width$}  {}", r.name, r.got)?;
            for p in &r.problems {
                writeln!(f, "        {p}")?;
            }
        }
        writeln!(
            f,
            "{} fixture(s): {} passed, {} failed (ruleset {})",
            self.results.len(),
            self.results.len() - self.failed(),
            self.failed(),
            self.ruleset
        )
    }
}

/// The fixture names of a folder: every `<name>.eml`, sorted.
pub fn fixture_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".eml").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The fixtures' register: `clients.csv`, `accountants.csv` and (optionally) `absences.csv` of `dir`.
pub fn load_register(dir: &Path) -> anyhow::Result<Directory> {
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("read {}", path.display()))
    };
    let clients = match read("clients.csv")? {
        Some(t) => crate::directory::parse_clients_csv("clients.csv", &t)?,
        None => Vec::new(),
    };
    let accountants = match read("accountants.csv")? {
        Some(t) => crate::directory::parse_accountants_csv("accountants.csv", &t)?,
        None => Vec::new(),
    };
    let absences = match read("absences.csv")? {
        Some(t) => crate::directory::parse_absences_csv("absences.csv", &t)?,
        None => Vec::new(),
    };
    Ok(Directory::new(clients, accountants, absences))
}

/// The one fixture runner (`taxinbox rules test` and the integration test): every `<name>.eml` of `tests_dir`
/// through the rules of `rules_dir`, against the register of `tests_dir/register`, received on its `Date:` header.
pub fn run_fixtures(
    rules_dir: &Path,
    tests_dir: &Path,
    limits: &Limits,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<FixtureRun> {
    let directory = load_register(&tests_dir.join("register"))?;
    let pipeline = Pipeline::load(rules_dir, limits, directory, timezone)?;
    let mut run = FixtureRun {
        ruleset: pipeline.rules.version(),
        results: Vec::new(),
    };
    for name in fixture_names(tests_dir)? {
        run.results.push(run_fixture(&pipeline, tests_dir, &name)?);
    }
    if run.results.is_empty() {
        anyhow::bail!("no fixtures (*.eml) in {}", tests_dir.display());
    }
    Ok(run)
}

fn run_fixture(pipeline: &Pipeline, dir: &Path, name: &str) -> anyhow::Result<FixtureResult> {
    let mut result = FixtureResult {
        name: name.to_owned(),
        got: String::new(),
        problems: Vec::new(),
    };
    let raw = std::fs::read(dir.join(format!("{name}.eml")))
        .with_context(|| format!("read {name}.eml"))?;
    let expected_path = dir.join(format!("{name}.expected.toml"));
    let expected: Expected = match std::fs::read_to_string(&expected_path) {
        Err(e) => {
            result
                .problems
                .push(format!("{}: {e}", expected_path.display()));
            return Ok(result);
        }
        Ok(text) => match toml::from_str(&text) {
            Ok(x) => x,
            Err(e) => {
                result.problems.push(format!("{name}.expected.toml: {e}"));
                return Ok(result);
            }
        },
    };
    // The fixture's own Date: header is its received date, so deadlines never depend on the day the test runs.
    let now: DateTime<Utc> = match crate::mail::parse(&raw).ok().and_then(|p| p.date) {
        Some(d) => d.with_timezone(&Utc),
        None => {
            result
                .problems
                .push("the mail has no readable Date: header (a fixture needs one)".into());
            return Ok(result);
        }
    };
    let eval = pipeline.evaluate(&raw, "fixtures", now);
    let resolved = match eval.outcome {
        Ok(r) => r,
        Err(e) => {
            result.got = "quarantined".into();
            result.problems.push(format!("quarantined: {e}"));
            return Ok(result);
        }
    };
    let d = &resolved.decision;
    result.got = format!(
        "{}{} {} by {}",
        d.category,
        d.kind
            .as_deref()
            .map(|k| format!("/{k}"))
            .unwrap_or_default(),
        resolved.client_inn.as_deref().unwrap_or("-"),
        resolved.rule.as_deref().unwrap_or("(no rule)")
    );
    let p = &mut result.problems;
    differ(p, "category", Some(&d.category), Some(&expected.category));
    differ(p, "kind", d.kind.as_ref(), expected.kind.as_ref());
    differ(
        p,
        "client_inn",
        resolved.client_inn.as_ref(),
        expected.client_inn.as_ref(),
    );
    differ(p, "rule", resolved.rule.as_ref(), expected.rule.as_ref());
    if let Some(want) = &expected.demand {
        let got = resolved.demand.clone().unwrap_or_default();
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string());
        if want.number.is_some() {
            let key = |n: Option<&String>| n.map(|n| number_key(n));
            if key(got.number.as_ref()) != key(want.number.as_ref()) {
                p.push(format!(
                    "demand.number: got {:?}, want {:?}",
                    got.number, want.number
                ));
            }
        }
        if want.date.is_some() {
            differ(
                p,
                "demand.date",
                date(got.date).as_ref(),
                want.date.as_ref(),
            );
        }
        if want.sent.is_some() {
            differ(
                p,
                "demand.sent",
                date(got.sent.or(got.date)).as_ref(),
                want.sent.as_ref(),
            );
        }
    }
    if let Some(want) = &expected.tasks {
        let mut got: Vec<(String, String, String, String)> = resolved
            .tasks
            .iter()
            .map(|t| {
                (
                    t.step.clone(),
                    t.due.to_string(),
                    t.role.as_str().to_owned(),
                    t.assignee.clone().unwrap_or_default(),
                )
            })
            .collect();
        got.sort();
        let mut want = want.clone();
        want.sort_by(|a, b| (&a.step, &a.due).cmp(&(&b.step, &b.due)));
        let matches = got.len() == want.len()
            && got.iter().zip(&want).all(|(g, w)| {
                g.0 == w.step
                    && g.1 == w.due
                    && w.role.as_ref().map_or(true, |r| *r == g.2)
                    && w.assignee.as_ref().map_or(true, |a| *a == g.3)
            });
        if !matches {
            let show = |t: &(String, String, String, String)| {
                let who = if t.3.is_empty() { "(unassigned)" } else { &t.3 };
                format!("{} {} {} {}", t.0, t.1, t.2, who)
            };
            let want_shown: Vec<String> = want
                .iter()
                .map(|w| {
                    format!(
                        "{} {} {} {}",
                        w.step,
                        w.due,
                        w.role.as_deref().unwrap_or("*"),
                        match w.assignee.as_deref() {
                            None => "*",
                            Some("") => "(unassigned)",
                            Some(a) => a,
                        }
                    )
                })
                .collect();
            p.push(format!(
                "tasks: got [{}], want [{}]",
                got.iter().map(show).collect::<Vec<_>>().join("; "),
                want_shown.join("; ")
            ));
        }
    }
    Ok(result)
}

fn differ(problems: &mut Vec<String>, what: &str, got: Option<&String>, want: Option<&String>) {
    if got != want {
        let show = |v: Option<&String>| v.map_or("none".to_owned(), |s| format!("{s:?}"));
        problems.push(format!("{what}: got {}, want {}", show(got), show(want)));
    }
}

// ---- replay ----

/// A decision as replay compares it: what a person would notice changing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecisionView {
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub rule: Option<String>,
    /// `(step, due)`, sorted.
    pub tasks: Vec<(String, String)>,
    /// Why the mail was (or would be) quarantined.
    pub error: Option<String>,
}

/// One stored mail whose decision would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayChange {
    pub id: i64,
    pub source: String,
    pub received: String,
    pub old: DecisionView,
    pub new: DecisionView,
}

/// What replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayOutcome {
    pub examined: usize,
    /// Mail whose raw bytes were purged after retention: it cannot be replayed.
    pub purged: Vec<i64>,
    pub changes: Vec<ReplayChange>,
    pub ruleset: String,
}

impl fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "#{} received {}  {}", c.id, c.received, c.source)?;
            write_changes(f, &c.old, &c.new)?;
        }
        if !self.purged.is_empty() {
            writeln!(
                f,
                "not replayed (raw mail purged after retention): {}",
                self.purged
                    .iter()
                    .map(|id| format!("#{id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        writeln!(
            f,
            "{} of {} mail(s) would be decided differently by ruleset {} (nothing was written)",
            self.changes.len(),
            self.examined,
            self.ruleset
        )
    }
}

/// The lines of what changes between two decisions (`    category  old → new`), one per field that differs: the
/// one layout of `rules replay` and `rules shadow`.
pub fn write_changes(
    f: &mut impl fmt::Write,
    old: &DecisionView,
    new: &DecisionView,
) -> fmt::Result {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let tasks = |t: &[(String, String)]| {
        if t.is_empty() {
            "none".to_owned()
        } else {
            t.iter()
                .map(|(s, d)| format!("{s} {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut line = |what: &str, old: String, new: String| {
        if old != new {
            writeln!(f, "    {what:<9} {old} → {new}")
        } else {
            Ok(())
        }
    };
    line("category", opt(&old.category), opt(&new.category))?;
    line("kind", opt(&old.kind), opt(&new.kind))?;
    line("client", opt(&old.client_inn), opt(&new.client_inn))?;
    line("rule", opt(&old.rule), opt(&new.rule))?;
    line("tasks", tasks(&old.tasks), tasks(&new.tasks))?;
    line("error", opt(&old.error), opt(&new.error))
}

/// The pipeline of a candidate ruleset: `candidate` is a rules folder (with `mail/`) or a folder of `*.rhai`
/// alone, which then runs with the demand catalogue and calendars of the configured `root`.
pub fn candidate_pipeline(
    root: &Path,
    candidate: Option<&Path>,
    limits: &Limits,
    directory: Directory,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<Pipeline> {
    let (root, mail_dir) = match candidate {
        None => (root.to_path_buf(), root.join("mail")),
        Some(c) if c.join("mail").is_dir() => (c.to_path_buf(), c.join("mail")),
        Some(c) => (root.to_path_buf(), c.to_path_buf()),
    };
    let mut pipeline = Pipeline::load(&root, limits, directory, timezone)?;
    if mail_dir != root.join("mail") {
        let rules = Ruleset::load(&mail_dir, limits, &pipeline.ctx())?;
        pipeline.rules = super::LiveRules::new(rules);
    }
    Ok(pipeline)
}

/// Runs stored mail received on or after `since` through `pipeline` and lists the decisions that would change.
/// Reads only: pass a store opened with `Store::connect_read_only`.
pub async fn replay(
    store: &crate::store::Store,
    pipeline: &Pipeline,
    since: NaiveDate,
) -> anyhow::Result<ReplayOutcome> {
    let mut conn = store.acquire().await?;
    let stored = crate::store::decisions_since(&mut conn, &since.to_string()).await?;
    let mut outcome = ReplayOutcome {
        ruleset: pipeline.rules.version(),
        ..ReplayOutcome::default()
    };
    for old in stored {
        let Some(raw) = crate::store::raw_mail(&mut conn, &old.sha256).await? else {
            outcome.purged.push(old.id);
            continue;
        };
        outcome.examined += 1;
        // The clock only matters for a mail without a Date: header; its first processing time is what it had.
        let now = DateTime::parse_from_rfc3339(&old.processed_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let eval = pipeline.evaluate(&raw, &old.mailbox, now);
        let old_view = DecisionView {
            category: old.category.clone(),
            kind: old.kind.clone(),
            client_inn: old.client_inn.clone(),
            rule: old.rule.clone(),
            tasks: old.tasks.clone(),
            error: old.error.clone(),
        };
        let new_view = match &eval.outcome {
            Err(e) => DecisionView {
                error: Some(e.clone()),
                ..DecisionView::default()
            },
            Ok(r) => {
                // A mail that joined an earlier case created no tasks; if the new decision names the same demand
                // of the same client it would join that case again, so it still creates none.
                let joins_again = old.status == "linked"
                    && r.client_inn == old.client_inn
                    && r.demand.as_ref().is_some_and(|d| {
                        d.number.as_deref().map(number_key)
                            == old.demand_number.as_deref().map(number_key)
                            && d.date.map(|x| x.to_string()) == old.demand_date
                    });
                let mut tasks: Vec<(String, String)> = if joins_again {
                    Vec::new()
                } else {
                    r.tasks
                        .iter()
                        .map(|t| (t.step.clone(), t.due.to_string()))
                        .collect()
                };
                tasks.sort();
                DecisionView {
                    category: Some(r.decision.category.clone()),
                    kind: r.decision.kind.clone(),
                    client_inn: r.client_inn.clone(),
                    rule: r.rule.clone(),
                    tasks,
                    error: None,
                }
            }
        };
        if old_view != new_view {
            outcome.changes.push(ReplayChange {
                id: old.id,
                source: old.source,
                received: old.received_date,
                old: old_view,
                new: new_view,
            });
        }
    }
    Ok(outcome)
}

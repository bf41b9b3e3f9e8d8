//! `taxinbox rules check`: every rule file compiled and every decision linted, statically and on the fixture mail of
//! `rules/tests` (all rules, not only the first that decides). A library function returning a report, so the tests
//! drive exactly what the command runs; the command only prints. Reads files, writes nothing.

use super::{compile_file, read_sources, Decision, Limits, LoadError, RuleContext, Ruleset};
use crate::calendar::{DemandCatalog, ProductionCalendar};
use crate::directory::{Directory, Role};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The categories the pipeline knows (docs/rules-api.md); anything else is a typo.
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
        Ok(c) => {
            // A region's year not known in full is no error (the federal days still hold), but an admin must see it.
            for gap in c.region_gaps() {
                // The calendar names the file as it read it (under the rules folder given); the report names files
                // relative to the rules folder.
                let file = gap
                    .file
                    .as_deref()
                    .map(std::path::Path::new)
                    .and_then(std::path::Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                report.push(
                    Severity::Warning,
                    &format!("calendar/production/{file}"),
                    None,
                    format!("region {}: {gap}", gap.region),
                );
            }
            Some(c)
        }
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
        load_directory_csv(&tests_dir.join("register"))?
    } else {
        Directory::default()
    };
    let ctx = RuleContext {
        directory: Arc::new(directory),
        calendar: Arc::new(calendar),
        demands: Arc::new(demands),
        vocabulary: Arc::new(vocabulary),
    };

    let patterns = Arc::new(super::helpers::RegexCache::default());
    let engine = super::build_engine(limits, &ctx, &patterns);
    let mut compiled = true;
    for (name, text) in &sources {
        if let Err(LoadError::Script {
            file,
            line,
            column,
            message,
        }) = compile_file(&engine, &patterns, name, text)
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

/// The fixtures' directory: `clients.csv`, `accountants.csv` and (optionally) `absences.csv` of `dir`.
pub fn load_directory_csv(dir: &Path) -> anyhow::Result<Directory> {
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

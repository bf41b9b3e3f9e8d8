//! `taxinbox rules test`: fixtures as data (`rules/tests/<name>.eml` beside `<name>.expected.toml`) run through the
//! whole pipeline against the fixtures' directory, by one runner the command and the integration tests share.
//! Writes nothing.

use super::{number_key, Pipeline};
use crate::rules::check::{fixture_names, load_directory_csv};
use crate::rules::Limits;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;
use std::path::Path;

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

/// The one fixture runner (`taxinbox rules test` and the integration test): every `<name>.eml` of `tests_dir`
/// through the rules of `rules_dir`, against the directory of `tests_dir/directory`, received on its `Date:` header.
pub fn run_fixtures(
    rules_dir: &Path,
    tests_dir: &Path,
    limits: &Limits,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<FixtureRun> {
    let directory = load_directory_csv(&tests_dir.join("register"))?;
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
                    && w.role.as_ref().is_none_or(|r| *r == g.2)
                    && w.assignee.as_ref().is_none_or(|a| *a == g.3)
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

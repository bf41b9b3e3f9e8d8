//! The tax calendar: recurring obligations (returns, payments, notifications) as data, and the dates they fall due.
//!
//! Definitions live in `rules/calendar/*.toml` (admins edit them; `production/` beside them holds the production
//! calendars). Each `[[event]]` says which clients it applies to (an `applies` expression over regime and
//! attributes), how it recurs (monthly, quarterly, yearly, with the months/quarters), which period an occurrence
//! covers, its nominal due day and how many days ahead its task is created. From those, [`TaxCalendar`] lists a
//! client's obligations falling due in a year, each due date moved off a day off on the client's regional
//! production calendar (п. 7 ст. 6.1 НК РФ). Everything here is pure: the files are read once, the clock is a
//! parameter.
//!
//! The legal rules behind the shipped definitions are in `tests/domain/README.md`, section 5.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{Datelike as _, NaiveDate};
use serde::Deserialize;

use super::{CalendarError, ProductionCalendar};
use crate::directory::{Client, Patent};
use crate::mail::dates::MONTHS_GENITIVE;
use crate::toml_file::line_of;

// ---------------------------------------------------------------------------------------------------------------
// The applicability language: `& | !`, parentheses, names.

/// The names an `applies` expression may use. A name outside this list is a load error, so a typo in a rule file
/// cannot silently make an obligation apply to nobody.
const REGIMES: [&str; 7] = [
    "usn_income",
    "usn_income_expense",
    "osno",
    "psn",
    "eshn",
    "ausn",
    "npd",
];
const FLAGS: [&str; 8] = [
    "org",
    "ip",
    "employees",
    "vat",
    "property",
    "vehicles",
    "land",
    "profit_monthly",
];

/// A parsed `applies` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applies {
    /// A regime or a flag name.
    Name(String),
    /// `!x`
    Not(Box<Applies>),
    /// `x & y`
    And(Box<Applies>, Box<Applies>),
    /// `x | y`
    Or(Box<Applies>, Box<Applies>),
}

/// What an `applies` expression is evaluated against: the client's regime and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    /// The regime's name (`usn_income`, …).
    pub regime: String,
    /// Names that are true for the client: `org` or `ip`, `employees`, `vat`, and its attributes.
    pub flags: BTreeSet<String>,
}

impl ClientFacts {
    /// The facts of a directory client: ИП when the INN has 12 digits, otherwise an organisation.
    pub fn of(client: &Client) -> ClientFacts {
        let mut flags: BTreeSet<String> = client
            .attributes
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect();
        flags.insert(if client.is_individual() { "ip" } else { "org" }.to_owned());
        if client.has_employees {
            flags.insert("employees".to_owned());
        }
        if client.vat_payer {
            flags.insert("vat".to_owned());
        }
        ClientFacts {
            regime: client.regime.as_str().to_owned(),
            flags,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.regime == name || self.flags.contains(name)
    }
}

impl Applies {
    /// Parses an expression; `!` binds tighter than `&`, which binds tighter than `|`.
    pub fn parse(text: &str) -> Result<Applies, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0 };
        let expr = parser.or()?;
        match parser.tokens.get(parser.pos) {
            None => Ok(expr),
            Some(t) => Err(format!("unexpected {t:?} in {text:?}")),
        }
    }

    /// Whether the expression holds for a client.
    pub fn eval(&self, facts: &ClientFacts) -> bool {
        match self {
            Applies::Name(n) => facts.has(n),
            Applies::Not(x) => !x.eval(facts),
            Applies::And(a, b) => a.eval(facts) && b.eval(facts),
            Applies::Or(a, b) => a.eval(facts) || b.eval(facts),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => {}
            '&' => tokens.push(Token::And),
            '|' => tokens.push(Token::Or),
            '!' => tokens.push(Token::Not),
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let name = &text[i..end];
                if !REGIMES.contains(&name) && !FLAGS.contains(&name) {
                    return Err(format!(
                        "unknown name {name:?} (expected a regime {} or a flag {})",
                        REGIMES.join(" "),
                        FLAGS.join(" ")
                    ));
                }
                tokens.push(Token::Name(name.to_owned()));
            }
            other => return Err(format!("unexpected character {other:?} in {text:?}")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn eat(&mut self, token: &Token) -> bool {
        if self.tokens.get(self.pos) == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Applies, String> {
        let mut left = self.and()?;
        while self.eat(&Token::Or) {
            left = Applies::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Applies, String> {
        let mut left = self.unary()?;
        while self.eat(&Token::And) {
            left = Applies::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Applies, String> {
        if self.eat(&Token::Not) {
            return Ok(Applies::Not(Box::new(self.unary()?)));
        }
        if self.eat(&Token::Open) {
            let inner = self.or()?;
            if !self.eat(&Token::Close) {
                return Err("missing ')'".to_owned());
            }
            return Ok(inner);
        }
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Name(n)) => {
                self.pos += 1;
                Ok(Applies::Name(n))
            }
            Some(t) => Err(format!("expected a name, found {t:?}")),
            None => Err("expression ends too early".to_owned()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Definitions.

/// How an event recurs, and so which period each occurrence covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// One occurrence per listed month (1–12); `days` narrows each to a part of the month (the НДФЛ agent's
    /// 1–22 / 23–end split), the upper day clamped to the month's length.
    Monthly {
        months: Vec<u32>,
        days: Option<(u32, u32)>,
    },
    /// One occurrence per listed quarter (1–4).
    Quarterly {
        quarters: Vec<u32>,
        style: PeriodStyle,
    },
    /// One occurrence per year.
    Yearly,
}

/// How a quarterly period is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodStyle {
    /// The quarter itself: `Q1 2026` … `Q4 2026` (VAT).
    Quarter,
    /// The cumulative reporting period of the Code: `Q1 2026`, `H1 2026`, `9M 2026`, and `2026` for the year.
    ToDate,
}

/// When an occurrence is nominally due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueRule {
    /// Day `day` (clamped to the month's length) of the month `months_after` months after the period's last month.
    Day { months_after: u32, day: u32 },
    /// The last working day of the year in which the period ends (НДФЛ withheld 23–31 December, п. 6 ст. 226).
    LastWorkingDayOfYear,
}

/// A change for some occurrences of an event (the annual one among quarterly ones, December among months).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Applies to occurrences whose period ends in this month (12 = the fourth quarter / December).
    pub last_month: u32,
    pub id: Option<String>,
    pub title: Option<String>,
    pub due: Option<DueRule>,
}

/// One recurring obligation as defined in a rule file.
#[derive(Debug, Clone)]
pub struct EventDef {
    /// Id template (`injury_{year}_{mm}`); rendered, the canonical event id.
    pub id: String,
    /// Russian title template.
    pub title: String,
    /// The expression as written, and parsed.
    pub applies_text: String,
    pub applies: Applies,
    pub recurrence: Recurrence,
    pub due: DueRule,
    /// How many calendar days before the due date the task is created.
    pub lead_days: u32,
    /// The legal basis, for people.
    pub law: String,
    pub overrides: Vec<Override>,
    /// Only periods starting on or after / on or before these dates: for a rule that changed (contributions for
    /// an organisation's head are due from the January 2026 period on, 425-ФЗ).
    pub periods_from: Option<NaiveDate>,
    pub periods_until: Option<NaiveDate>,
    /// `file:line` of the definition, for messages.
    pub origin: String,
}

/// Every event definition, in file-name then file order, and the patent rule when a file defines one.
#[derive(Debug, Clone, Default)]
pub struct TaxCalendar {
    events: Vec<EventDef>,
    patent: Option<PatentRule>,
}

/// How the tax of a patent (ПСН) is paid, from `[patent]` of a calendar file (п. 2 ст. 346.51 НК РФ): a patent for
/// less than `split_from_months` months is paid whole by its last day; a longer one, one third within
/// `first_within_days` calendar days after its start and the rest by its last day; a patent ending on 31 December
/// is paid by `year_end_day` December instead. Every due date moves to the next working day.
#[derive(Debug, Clone)]
pub struct PatentRule {
    pub split_from_months: u32,
    pub first_within_days: u32,
    pub year_end_day: u32,
    pub lead_days: u32,
    pub law: String,
    /// Event id and title template of the single payment, the first third and the rest; the title may name
    /// `{number}`, `{from}` and `{to}` (dd.mm.yyyy).
    pub full: PatentPayment,
    pub first: PatentPayment,
    pub rest: PatentPayment,
    /// `file:line` of the definition, for messages.
    pub origin: String,
}

/// One payment of a patent: its event id and title template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatentPayment {
    pub id: String,
    pub title: String,
}

/// One obligation of one client: an occurrence of an event with its due date.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Obligation {
    /// Moved due date (first, so obligations sort by date).
    pub due: NaiveDate,
    /// Canonical event id (`usn_declaration_org`, `injury_2025_12`).
    pub event: String,
    /// The period covered, as the table writes it (`2025`, `Q1 2026`, `2026-01-01..2026-01-22`).
    pub period: String,
    pub title: String,
    /// The date the law writes, before moving off a day off.
    pub nominal: NaiveDate,
    pub lead_days: u32,
    pub law: String,
}

impl Obligation {
    /// The day the task is due to be created: `lead_days` before the due date.
    pub fn creation_date(&self) -> NaiveDate {
        self.due - chrono::Days::new(u64::from(self.lead_days))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    event: Vec<toml::Spanned<RawEvent>>,
    patent: Option<toml::Spanned<RawPatent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatent {
    split_from_months: u32,
    first_within_days: u32,
    year_end_day: u32,
    lead_days: u32,
    law: String,
    full: PatentPayment,
    first: PatentPayment,
    rest: PatentPayment,
}

fn patent_rule(raw: RawPatent, origin: String) -> Result<PatentRule, String> {
    if !(1..=12).contains(&raw.split_from_months) {
        return Err(format!(
            "split_from_months: {} is not a number of months (1-12)",
            raw.split_from_months
        ));
    }
    if !(1..=31).contains(&raw.year_end_day) {
        return Err(format!(
            "year_end_day: {} is not a day of December",
            raw.year_end_day
        ));
    }
    for (what, p) in [
        ("full", &raw.full),
        ("first", &raw.first),
        ("rest", &raw.rest),
    ] {
        for placeholder in placeholders(&p.title) {
            if !["number", "from", "to"].contains(&placeholder.as_str()) {
                return Err(format!(
                    "{what}.title: unknown placeholder {{{placeholder}}} (number, from, to)"
                ));
            }
        }
        if p.id.trim().is_empty() {
            return Err(format!("{what}.id: empty"));
        }
    }
    Ok(PatentRule {
        split_from_months: raw.split_from_months,
        first_within_days: raw.first_within_days,
        year_end_day: raw.year_end_day,
        lead_days: raw.lead_days,
        law: raw.law,
        full: raw.full,
        first: raw.first,
        rest: raw.rest,
        origin,
    })
}

/// The `{name}` placeholders of a template.
fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    title: String,
    applies: String,
    recurrence: String,
    #[serde(default)]
    months: Option<Vec<u32>>,
    #[serde(default)]
    days: Option<[u32; 2]>,
    #[serde(default)]
    quarters: Option<Vec<u32>>,
    #[serde(default)]
    period: Option<String>,
    due: RawDue,
    lead_days: u32,
    #[serde(default)]
    law: String,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
    #[serde(default)]
    periods_from: Option<NaiveDate>,
    #[serde(default)]
    periods_until: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDue {
    Rule(String),
    Day { months_after: u32, day: u32 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    last_month: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    due: Option<RawDue>,
}

/// The placeholders a template may use; anything else in braces is a load error.
const PLACEHOLDERS: [&str; 11] = [
    "year",
    "mm",
    "month",
    "month_gen",
    "from_day",
    "to_day",
    "q",
    "quarter_roman",
    "nth",
    "period_title",
    "ytd",
];

fn due_rule(raw: &RawDue) -> Result<DueRule, String> {
    match raw {
        RawDue::Rule(r) if r == "last_working_day_of_year" => Ok(DueRule::LastWorkingDayOfYear),
        RawDue::Rule(r) => Err(format!(
            "due = {r:?}: expected {{ months_after = N, day = D }} or \"last_working_day_of_year\""
        )),
        RawDue::Day { months_after, day } => {
            if !(1..=31).contains(day) {
                return Err(format!("due.day = {day}: expected 1–31"));
            }
            Ok(DueRule::Day {
                months_after: *months_after,
                day: *day,
            })
        }
    }
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in {template:?} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn event_def(raw: RawEvent, origin: String) -> Result<EventDef, String> {
    let applies = Applies::parse(&raw.applies).map_err(|e| format!("applies: {e}"))?;
    check_template(&raw.id)?;
    check_template(&raw.title)?;
    let recurrence = match raw.recurrence.as_str() {
        "monthly" => {
            let months = raw.months.clone().unwrap_or_else(|| (1..=12).collect());
            if months.iter().any(|m| !(1..=12).contains(m)) {
                return Err(format!("months = {months:?}: expected values 1–12"));
            }
            let days = match raw.days {
                Some([from, to]) if from >= 1 && from <= to && to <= 31 => Some((from, to)),
                Some(d) => return Err(format!("days = {d:?}: expected [from, to] within 1–31")),
                None => None,
            };
            Recurrence::Monthly { months, days }
        }
        "quarterly" => {
            let quarters = raw.quarters.unwrap_or_else(|| vec![1, 2, 3, 4]);
            if quarters.iter().any(|q| !(1..=4).contains(q)) {
                return Err(format!("quarters = {quarters:?}: expected values 1–4"));
            }
            let style = match raw.period.as_deref() {
                None | Some("quarter") => PeriodStyle::Quarter,
                Some("to_date") => PeriodStyle::ToDate,
                Some(other) => {
                    return Err(format!(
                        "period = {other:?}: expected \"quarter\" or \"to_date\""
                    ))
                }
            };
            Recurrence::Quarterly { quarters, style }
        }
        "yearly" => Recurrence::Yearly,
        other => {
            return Err(format!(
                "recurrence = {other:?}: expected monthly, quarterly or yearly"
            ))
        }
    };
    if !matches!(recurrence, Recurrence::Monthly { .. })
        && (raw.months.is_some() || raw.days.is_some())
    {
        return Err("months/days are for monthly events only".to_owned());
    }
    let mut overrides = Vec::new();
    for o in raw.overrides {
        if !(1..=12).contains(&o.last_month) {
            return Err(format!(
                "override.last_month = {}: expected 1–12",
                o.last_month
            ));
        }
        for t in o.id.iter().chain(o.title.iter()) {
            check_template(t)?;
        }
        overrides.push(Override {
            last_month: o.last_month,
            id: o.id,
            title: o.title,
            due: o.due.as_ref().map(due_rule).transpose()?,
        });
    }
    Ok(EventDef {
        id: raw.id,
        title: raw.title,
        applies_text: raw.applies,
        applies,
        recurrence,
        due: due_rule(&raw.due)?,
        lead_days: raw.lead_days,
        law: raw.law,
        overrides,
        periods_from: raw.periods_from,
        periods_until: raw.periods_until,
        origin,
    })
}

impl TaxCalendar {
    /// Loads every `*.toml` directly in `dir` (not its sub-folders, where the production calendars live), in
    /// file-name order.
    pub fn load_dir(dir: &Path) -> Result<TaxCalendar, CalendarError> {
        let files = super::read_toml_files(dir)?;
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect();
        TaxCalendar::from_toml_strs(&borrowed)
    }

    /// Parses definition files given as `(name, content)`; errors name `file:line`. An event id template may
    /// appear only once, so two files cannot both define an obligation.
    pub fn from_toml_strs(files: &[(&str, &str)]) -> Result<TaxCalendar, CalendarError> {
        let mut events = Vec::new();
        let mut patent: Option<PatentRule> = None;
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        for (file, content) in files {
            let raw: RawFile =
                toml::from_str(content).map_err(|e| CalendarError::from_toml(file, content, &e))?;
            if let Some(spanned) = raw.patent {
                let line = line_of(content, spanned.span().start);
                let origin = format!("{file}:{line}");
                let parse_error = |message: String| CalendarError::Parse {
                    file: (*file).to_owned(),
                    line: Some(line),
                    message,
                };
                if let Some(first) = &patent {
                    return Err(parse_error(format!(
                        "[patent] is already defined at {}",
                        first.origin
                    )));
                }
                patent = Some(patent_rule(spanned.into_inner(), origin).map_err(parse_error)?);
            }
            for spanned in raw.event {
                let line = line_of(content, spanned.span().start);
                let origin = format!("{file}:{line}");
                let raw = spanned.into_inner();
                let def =
                    event_def(raw, origin.clone()).map_err(|message| CalendarError::Parse {
                        file: (*file).to_owned(),
                        line: Some(line),
                        message,
                    })?;
                let key = format!("{} from {:?}", def.id, def.periods_from);
                if let Some(first) = seen.insert(key, origin) {
                    return Err(CalendarError::Parse {
                        file: (*file).to_owned(),
                        line: Some(line),
                        message: format!("event {} is already defined at {first}", def.id),
                    });
                }
                events.push(def);
            }
        }
        Ok(TaxCalendar { events, patent })
    }

    /// The patent rule, when a calendar file defines `[patent]`.
    pub fn patent_rule(&self) -> Option<&PatentRule> {
        self.patent.as_ref()
    }

    /// The payments of one patent with their due dates on `region`'s calendar (none without a patent rule).
    pub fn patent_payments(
        &self,
        patent: &Patent,
        region: Option<&str>,
        calendar: &ProductionCalendar,
    ) -> Result<Vec<Obligation>, CalendarError> {
        let Some(rule) = &self.patent else {
            return Ok(Vec::new());
        };
        let invalid = |message: String| CalendarError::Invalid {
            file: rule.origin.clone(),
            message,
        };
        // A patent ending on 31 December is paid by the rule's day of December (259-ФЗ), otherwise by its last day.
        let last = if patent.to.month() == 12 && patent.to.day() == 31 {
            NaiveDate::from_ymd_opt(patent.to.year(), 12, rule.year_end_day)
                .ok_or_else(|| invalid(format!("no day {} in December", rule.year_end_day)))?
        } else {
            patent.to
        };
        // «от шести месяцев»: a patent whose term reaches the day before the same date six months on (exactly six
        // months) is paid in two parts.
        let split = patent
            .from
            .checked_add_months(chrono::Months::new(rule.split_from_months))
            .and_then(|d| d.pred_opt())
            .is_some_and(|six| patent.to >= six);
        // A term of days starts the day after the event that begins it (п. 2 ст. 6.1 НК РФ).
        let first = patent.from + chrono::Days::new(u64::from(rule.first_within_days));
        let plan: Vec<(&PatentPayment, NaiveDate)> = if split {
            vec![(&rule.first, first), (&rule.rest, last)]
        } else {
            vec![(&rule.full, last)]
        };
        let show = |d: NaiveDate| d.format("%d.%m.%Y").to_string();
        let values = [
            ("number", patent.number.clone()),
            ("from", show(patent.from)),
            ("to", show(patent.to)),
        ];
        let mut out = Vec::with_capacity(plan.len());
        for (payment, nominal) in plan {
            out.push(Obligation {
                due: calendar.next_working_day(nominal, region)?,
                event: payment.id.clone(),
                period: patent.number.clone(),
                title: render(&payment.title, &values),
                nominal,
                lead_days: rule.lead_days,
                law: rule.law.clone(),
            });
        }
        Ok(out)
    }

    /// The definitions, in load order.
    pub fn events(&self) -> &[EventDef] {
        &self.events
    }

    /// The obligations of a client whose (moved) due date falls in `year`, sorted by due date then event id.
    ///
    /// Periods of `year - 1` and `year` are considered: nothing of a later period can be due in `year`. A due
    /// date is only computed (and so the production calendar only consulted) for occurrences nominally due in
    /// `year` or in December before it (which may move into January); so listing 2026 needs the 2025 calendar
    /// only for late-December dates, and errors if a needed year has no file. For many clients,
    /// [`TaxCalendar::year_plan`] lists the same obligations computing each event's dates once per calendar.
    pub fn obligations(
        &self,
        facts: &ClientFacts,
        region: Option<&str>,
        year: i32,
        calendar: &ProductionCalendar,
    ) -> Result<Vec<Obligation>, CalendarError> {
        let mut out = Vec::new();
        for def in self.events.iter().filter(|d| d.applies.eval(facts)) {
            out.extend(def.obligations_due_in(year, region, calendar)?);
        }
        out.sort();
        Ok(out)
    }

    /// What [`TaxCalendar::obligations`] lists for any client in `year`, computed once per event and production
    /// calendar (federal or a region's own) instead of once per client: `calendar --year` for a firm of
    /// thousands of clients.
    pub fn year_plan<'a>(&'a self, year: i32, calendar: &'a ProductionCalendar) -> YearPlan<'a> {
        let regions: Vec<String> = calendar.regions().into_iter().collect();
        let cells = (0..=regions.len())
            .map(|_| {
                (0..self.events.len())
                    .map(|_| std::sync::OnceLock::new())
                    .collect()
            })
            .collect();
        YearPlan {
            tax: self,
            calendar,
            year,
            regions,
            cells,
        }
    }

    /// The obligations whose task should exist on `today`: created `lead_days` before the due date, and not yet
    /// past due. Only occurrences whose creation window may have opened are resolved, so late in December the
    /// next year's production calendar is needed only once a task of that year is actually due to be created.
    pub fn due_for_creation(
        &self,
        facts: &ClientFacts,
        region: Option<&str>,
        today: NaiveDate,
        calendar: &ProductionCalendar,
    ) -> Result<Vec<Obligation>, CalendarError> {
        let mut out = Vec::new();
        for def in self.events.iter().filter(|d| d.applies.eval(facts)) {
            let lead = chrono::Days::new(u64::from(def.lead_days));
            for period_year in [today.year() - 1, today.year(), today.year() + 1] {
                for occ in def.occurrences(period_year) {
                    let Some(anchor) = occ.anchor() else { continue };
                    // The due date is never before the anchor (dates only move forward, and the last working day
                    // of the year lies within the anchor's year, at most a few days before 31 December), so an
                    // anchor whose window has not opened yet cannot be due for creation; an anchor more than a
                    // month in the past is long overdue.
                    let window_open = anchor.checked_sub_days(lead).is_some_and(|d| d <= today)
                        || matches!(occ.due, DueRule::LastWorkingDayOfYear)
                            && anchor.year() == today.year()
                            && today.month() == 12;
                    if !window_open || anchor + chrono::Days::new(40) < today {
                        continue;
                    }
                    let obligation = occ.resolve(region, calendar)?;
                    if obligation.due >= today && obligation.creation_date() <= today {
                        out.push(obligation);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Occurrences.

const MONTHS: [&str; 12] = [
    "январь",
    "февраль",
    "март",
    "апрель",
    "май",
    "июнь",
    "июль",
    "август",
    "сентябрь",
    "октябрь",
    "ноябрь",
    "декабрь",
];
const ROMAN: [&str; 4] = ["I", "II", "III", "IV"];

/// One occurrence of an event before its due date is moved.
#[derive(Debug, Clone)]
struct Occurrence<'a> {
    def: &'a EventDef,
    event: String,
    title: String,
    period: String,
    /// The year and month the period ends in (the anchor of `DueRule::Day`).
    end: (i32, u32),
    /// The period's first day.
    start: NaiveDate,
    due: DueRule,
}

fn month_length(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

fn add_months(year: i32, month: u32, n: u32) -> (i32, u32) {
    let total = i64::from(year) * 12 + i64::from(month - 1) + i64::from(n);
    (
        i32::try_from(total.div_euclid(12)).unwrap_or(year),
        u32::try_from(total.rem_euclid(12)).unwrap_or(0) + 1,
    )
}

fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    // Checked at load time; a placeholder without a value for this recurrence stays visible.
                    None => {
                        let _ = write!(out, "{{{name}}}");
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl EventDef {
    /// The occurrences whose period lies in `year`, in period order.
    fn occurrences(&self, year: i32) -> Vec<Occurrence<'_>> {
        let mut out = Vec::new();
        match &self.recurrence {
            Recurrence::Monthly { months, days } => {
                for &m in months {
                    let idx = (m - 1) as usize;
                    let q = (m - 1) / 3 + 1;
                    let mut values = vec![
                        ("year", year.to_string()),
                        ("mm", format!("{m:02}")),
                        ("month", MONTHS[idx].to_owned()),
                        ("month_gen", MONTHS_GENITIVE[idx].to_owned()),
                        ("q", q.to_string()),
                        ("quarter_roman", ROMAN[(q - 1) as usize].to_owned()),
                        ("nth", ((m - 1) % 3 + 1).to_string()),
                        ("period_title", format!("{} {year}", MONTHS[idx])),
                    ];
                    let period = match days {
                        Some((from, to)) => {
                            let to = (*to).min(month_length(year, m));
                            values.push(("from_day", from.to_string()));
                            values.push(("to_day", to.to_string()));
                            format!("{year}-{m:02}-{from:02}..{year}-{m:02}-{to:02}")
                        }
                        None => format!("{year}-{m:02}"),
                    };
                    let first = days.map_or(1, |d| d.0);
                    out.push(self.occurrence(year, m, first, period, &values));
                }
            }
            Recurrence::Quarterly { quarters, style } => {
                for &q in quarters {
                    let roman = ROMAN[(q - 1) as usize];
                    let (period, ytd, title) = match (style, q) {
                        (PeriodStyle::Quarter, _) => (
                            format!("Q{q} {year}"),
                            format!("q{q}"),
                            format!("{roman} квартал {year}"),
                        ),
                        (PeriodStyle::ToDate, 1) => (
                            format!("Q1 {year}"),
                            "q1".to_owned(),
                            format!("I квартал {year}"),
                        ),
                        (PeriodStyle::ToDate, 2) => (
                            format!("H1 {year}"),
                            "h1".to_owned(),
                            format!("полугодие {year}"),
                        ),
                        (PeriodStyle::ToDate, 3) => (
                            format!("9M {year}"),
                            "9m".to_owned(),
                            format!("9 месяцев {year}"),
                        ),
                        (PeriodStyle::ToDate, _) => {
                            (year.to_string(), "year".to_owned(), format!("{year} год"))
                        }
                    };
                    let values = vec![
                        ("year", year.to_string()),
                        ("q", q.to_string()),
                        ("quarter_roman", roman.to_owned()),
                        ("ytd", ytd),
                        ("period_title", title),
                    ];
                    out.push(self.occurrence(year, q * 3, 1, period, &values));
                }
            }
            Recurrence::Yearly => {
                let values = vec![
                    ("year", year.to_string()),
                    ("period_title", format!("{year} год")),
                ];
                out.push(self.occurrence(year, 12, 1, year.to_string(), &values));
            }
        }
        out.retain(|o| {
            self.periods_from.is_none_or(|from| o.start >= from)
                && self.periods_until.is_none_or(|until| o.start <= until)
        });
        out
    }

    /// `first_day` is the period's first day in its first month (a quarter or year starts on its first month's
    /// first day).
    fn occurrence(
        &self,
        year: i32,
        last_month: u32,
        first_day: u32,
        period: String,
        values: &[(&str, String)],
    ) -> Occurrence<'_> {
        let o = self.overrides.iter().find(|o| o.last_month == last_month);
        let id = o.and_then(|o| o.id.as_deref()).unwrap_or(&self.id);
        let title = o.and_then(|o| o.title.as_deref()).unwrap_or(&self.title);
        Occurrence {
            def: self,
            event: render(id, values),
            title: render(title, values),
            period,
            end: (year, last_month),
            start: self.period_start(year, last_month, first_day),
            due: o.and_then(|o| o.due).unwrap_or(self.due),
        }
    }
}

impl EventDef {
    fn period_start(&self, year: i32, last_month: u32, first_day: u32) -> NaiveDate {
        let first_month = match self.recurrence {
            Recurrence::Monthly { .. } => last_month,
            Recurrence::Quarterly { .. } => last_month - 2,
            Recurrence::Yearly => 1,
        };
        NaiveDate::from_ymd_opt(year, first_month, first_day).unwrap_or(NaiveDate::MIN)
    }

    /// This event's obligations whose (moved) due date falls in `year`, in period order: the part of
    /// [`TaxCalendar::obligations`] that depends on the event and the calendar only, not on the client.
    fn obligations_due_in(
        &self,
        year: i32,
        region: Option<&str>,
        calendar: &ProductionCalendar,
    ) -> Result<Vec<Obligation>, CalendarError> {
        let mut out = Vec::new();
        for period_year in [year - 1, year] {
            for occ in self.occurrences(period_year) {
                let Some(anchor) = occ.anchor() else { continue };
                let maybe_in_year =
                    anchor.year() == year || (anchor.year() == year - 1 && anchor.month() == 12);
                if !maybe_in_year {
                    continue;
                }
                let obligation = occ.resolve(region, calendar)?;
                if obligation.due.year() == year {
                    out.push(obligation);
                }
            }
        }
        Ok(out)
    }
}

/// One year of the tax calendar for many clients ([`TaxCalendar::year_plan`]): each event's obligations are
/// computed the first time a client needs them on a production calendar — the federal one, or a region's own
/// (a region without a section in any year counts as federal, as [`ProductionCalendar::is_working_day`] does) —
/// and copied for every later client. The lists are exactly [`TaxCalendar::obligations`]'s, errors included.
#[derive(Debug)]
pub struct YearPlan<'a> {
    tax: &'a TaxCalendar,
    calendar: &'a ProductionCalendar,
    year: i32,
    /// The regions with days of their own; `cells[0]` is the federal calendar, `cells[k + 1]` region `k`'s.
    regions: Vec<String>,
    /// By calendar, then by event: the event's obligations once computed; `None` when computing them failed
    /// (computed again for the error, so that it is the one [`TaxCalendar::obligations`] returns).
    cells: Vec<Vec<std::sync::OnceLock<Option<Vec<Obligation>>>>>,
}

impl YearPlan<'_> {
    /// The year this plan lists.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// What [`TaxCalendar::obligations`] returns for a client with these facts in `region`, borrowed from the plan
    /// (a firm's year is a million obligations: copying each one's texts for every client would be most of the cost).
    pub fn obligations(
        &self,
        facts: &ClientFacts,
        region: Option<&str>,
    ) -> Result<Vec<&Obligation>, CalendarError> {
        let (cells, key) = match region
            .map(str::trim)
            .and_then(|r| self.regions.iter().position(|k| k == r))
        {
            Some(k) => (&self.cells[k + 1], Some(self.regions[k].as_str())),
            None => (&self.cells[0], None),
        };
        let mut out = Vec::new();
        for (def, cell) in self.tax.events.iter().zip(cells) {
            if !def.applies.eval(facts) {
                continue;
            }
            let computed =
                cell.get_or_init(|| def.obligations_due_in(self.year, key, self.calendar).ok());
            match computed {
                Some(list) => out.extend(list.iter()),
                // The computation failed: run again (it is deterministic) to return its error.
                None => {
                    def.obligations_due_in(self.year, key, self.calendar)?;
                }
            }
        }
        // Equal obligations are equal in every field, so the unstable sort gives the stable sort's order.
        out.sort_unstable();
        Ok(out)
    }
}

impl Occurrence<'_> {
    /// The nominal date for `Day` rules; for the last working day of the year, 31 December of that year (the
    /// latest it can be), which is good enough to decide whether the occurrence may concern a year.
    fn anchor(&self) -> Option<NaiveDate> {
        let (year, month) = self.end;
        match self.due {
            DueRule::Day { months_after, day } => {
                let (y, m) = add_months(year, month, months_after);
                NaiveDate::from_ymd_opt(y, m, day.min(month_length(y, m)))
            }
            DueRule::LastWorkingDayOfYear => NaiveDate::from_ymd_opt(year, 12, 31),
        }
    }

    fn resolve(
        &self,
        region: Option<&str>,
        calendar: &ProductionCalendar,
    ) -> Result<Obligation, CalendarError> {
        let anchor = self.anchor().ok_or_else(|| CalendarError::Invalid {
            file: self.def.origin.clone(),
            message: format!("{}: no valid due date", self.event),
        })?;
        let (nominal, due) = match self.due {
            DueRule::Day { .. } => (anchor, calendar.next_working_day(anchor, region)?),
            DueRule::LastWorkingDayOfYear => {
                let last = last_working_day_of_year(anchor.year(), region, calendar)?;
                // The law names the day itself, so nominal and due coincide.
                (last, last)
            }
        };
        Ok(Obligation {
            due,
            event: self.event.clone(),
            period: self.period.clone(),
            title: self.title.clone(),
            nominal,
            lead_days: self.def.lead_days,
            law: self.def.law.clone(),
        })
    }
}

/// The last working day of `year` in `region`, walking back from 31 December.
pub fn last_working_day_of_year(
    year: i32,
    region: Option<&str>,
    calendar: &ProductionCalendar,
) -> Result<NaiveDate, CalendarError> {
    let mut day = NaiveDate::from_ymd_opt(year, 12, 31).ok_or(CalendarError::OutOfRange {
        date: NaiveDate::MIN,
        year,
        loaded: String::new(),
    })?;
    // A year has far fewer than 31 consecutive days off; the bound only stops a malformed calendar from looping.
    for _ in 0..31 {
        if calendar.is_working_day(day, region)? {
            return Ok(day);
        }
        day = day.pred_opt().unwrap_or(day);
    }
    Ok(day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts(regime: &str, flags: &[&str]) -> ClientFacts {
        ClientFacts {
            regime: regime.to_owned(),
            flags: flags.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn production() -> ProductionCalendar {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/calendar/production");
        ProductionCalendar::load_dir(&root).unwrap()
    }

    fn shipped() -> TaxCalendar {
        TaxCalendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/calendar"))
            .unwrap()
    }

    #[test]
    fn a_year_plan_lists_for_every_client_and_region_exactly_what_each_client_computed_alone_does()
    {
        let tax = shipped();
        let cal = production();
        // Every flag beside the legal form (FLAGS starts with "org" and "ip", looped over below).
        let flags = &FLAGS[2..];
        let year = 2026;
        let plan = tax.year_plan(year, &cal);
        for regime in REGIMES {
            for form in ["org", "ip"] {
                for mask in 0..(1u32 << flags.len()) {
                    let mut set: Vec<&str> = flags
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, f)| *f)
                        .collect();
                    set.push(form);
                    let f = facts(regime, &set);
                    for region in [None, Some("16"), Some(" 02 "), Some("77")] {
                        let alone = tax.obligations(&f, region, year, &cal).unwrap();
                        assert!(!alone.is_empty(), "{regime} {set:?}");
                        assert_eq!(
                            plan.obligations(&f, region)
                                .unwrap()
                                .into_iter()
                                .cloned()
                                .collect::<Vec<_>>(),
                            alone,
                            "{year} {regime} {set:?} {region:?}"
                        );
                    }
                }
            }
        }
        // A year whose calendar is missing fails the same way, on the first client that needs it.
        let f = facts("osno", &["org", "employees", "vat"]);
        let plan = tax.year_plan(2029, &cal);
        for _ in 0..2 {
            assert_eq!(
                plan.obligations(&f, Some("16")).unwrap_err().to_string(),
                tax.obligations(&f, Some("16"), 2029, &cal)
                    .unwrap_err()
                    .to_string()
            );
        }
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let e = Applies::parse("osno | usn_income & !employees").unwrap();
        assert!(e.eval(&facts("osno", &["employees"])));
        assert!(e.eval(&facts("usn_income", &[])));
        assert!(!e.eval(&facts("usn_income", &["employees"])));
        let p = Applies::parse("(org | employees) & !ausn").unwrap();
        assert!(p.eval(&facts("osno", &["org"])));
        assert!(p.eval(&facts("psn", &["ip", "employees"])));
        assert!(!p.eval(&facts("ausn", &["org", "employees"])));
        assert!(!p.eval(&facts("usn_income", &["ip"])));
    }

    #[test]
    fn unknown_names_and_broken_expressions_are_rejected() {
        assert!(Applies::parse("usn").unwrap_err().contains("unknown name"));
        assert!(Applies::parse("(vat & org")
            .unwrap_err()
            .contains("missing ')'"));
        assert!(Applies::parse("vat &").is_err());
        assert!(Applies::parse("vat org").is_err());
        assert!(Applies::parse("vat + org").is_err());
    }

    #[test]
    fn a_bad_definition_is_reported_with_its_file_and_line() {
        let text = "[[event]]\nid = \"a\"\ntitle = \"A\"\napplies = \"org\"\nrecurrence = \"yearly\"\ndue = { months_after = 3, day = 25 }\nlead_days = 10\n\n[[event]]\nid = \"b\"\ntitle = \"B\"\napplies = \"orgg\"\nrecurrence = \"yearly\"\ndue = { months_after = 3, day = 25 }\nlead_days = 10\n";
        let err = TaxCalendar::from_toml_strs(&[("x.toml", text)]).unwrap_err();
        assert!(err.to_string().starts_with("x.toml:9: applies"), "{err}");
        let err = TaxCalendar::from_toml_strs(&[("y.toml", "[[event]]\nid = 3\n")]).unwrap_err();
        assert!(err.to_string().starts_with("y.toml:2"), "{err}");
    }

    fn find<'a>(list: &'a [Obligation], event: &str) -> &'a Obligation {
        list.iter()
            .find(|o| o.event == event)
            .unwrap_or_else(|| panic!("{event} missing"))
    }

    #[test]
    fn ndfl_agent_splits_each_month_at_the_22nd_and_december_ends_on_the_last_working_day() {
        let list = shipped()
            .obligations(
                &facts("osno", &["org", "employees"]),
                None,
                2026,
                &production(),
            )
            .unwrap();
        let jan1 = find(&list, "ndfl_notice_2026_01_1");
        assert_eq!(jan1.period, "2026-01-01..2026-01-22");
        assert_eq!(jan1.due.to_string(), "2026-01-26");
        let jan2 = find(&list, "ndfl_pay_2026_01_2");
        assert_eq!(jan2.period, "2026-01-23..2026-01-31");
        assert_eq!(jan2.due.to_string(), "2026-02-05");
        let feb2 = find(&list, "ndfl_notice_2026_02_2");
        assert_eq!(feb2.period, "2026-02-23..2026-02-28");
        let dec2 = find(&list, "ndfl_pay_2026_12_2");
        assert_eq!(
            dec2.due.to_string(),
            "2026-12-30",
            "31.12.2026 is a day off"
        );
        // December 2025's second half was due in 2025; January has no carry-in period.
        assert!(!list.iter().any(|o| o.event.starts_with("ndfl_notice_2025")));
    }

    #[test]
    fn personified_data_is_due_for_eight_months_only() {
        let list = shipped()
            .obligations(&facts("usn_income", &["org"]), None, 2026, &production())
            .unwrap();
        let months: Vec<&str> = list
            .iter()
            .filter(|o| o.event.starts_with("pers_info_"))
            .map(|o| o.period.as_str())
            .collect();
        assert_eq!(
            months,
            [
                "2026-01", "2026-02", "2026-04", "2026-05", "2026-07", "2026-08", "2026-10",
                "2026-11"
            ]
        );
    }

    #[test]
    fn usn_returns_are_due_in_march_for_organisations_and_april_for_entrepreneurs() {
        let cal = shipped();
        let org = cal
            .obligations(&facts("usn_income", &["org"]), None, 2026, &production())
            .unwrap();
        assert_eq!(
            find(&org, "usn_declaration_org").due.to_string(),
            "2026-03-25"
        );
        assert_eq!(find(&org, "usn_tax_year_org").due.to_string(), "2026-03-30");
        let ip = cal
            .obligations(&facts("usn_income", &["ip"]), None, 2026, &production())
            .unwrap();
        assert_eq!(
            find(&ip, "usn_declaration_ip").due.to_string(),
            "2026-04-27"
        );
        assert!(!ip.iter().any(|o| o.event == "usn_declaration_org"));
    }

    #[test]
    fn quarterly_reports_are_cumulative_and_the_year_closes_them() {
        let list = shipped()
            .obligations(
                &facts("osno", &["org", "employees"]),
                None,
                2026,
                &production(),
            )
            .unwrap();
        assert_eq!(find(&list, "rsv_h1").period, "H1 2026");
        assert_eq!(find(&list, "rsv_q4_2025").period, "2025");
        assert_eq!(find(&list, "rsv_q4_2025").due.to_string(), "2026-01-26");
        assert_eq!(find(&list, "ndfl6_2025").due.to_string(), "2026-02-25");
    }

    #[test]
    fn a_regional_day_off_moves_a_due_date_in_that_region_only() {
        // A synthetic 2026 with one regional day off (Wednesday 15.04, the nominal date of the March injury
        // contributions): the shipped 2026 files move no row of the table for 16/02.
        let text = "year = 2026\ndays_off = []\n[regions.16]\ndays_off = [\"2026-04-15\"]\n";
        let cal = ProductionCalendar::from_toml_strs(&[
            ("2025.toml", "year = 2025\n"),
            ("2026.toml", text),
        ])
        .unwrap();
        let list = |region| {
            shipped()
                .obligations(&facts("osno", &["org", "employees"]), region, 2026, &cal)
                .unwrap()
        };
        assert_eq!(
            find(&list(None), "injury_2026_03").due.to_string(),
            "2026-04-15"
        );
        assert_eq!(
            find(&list(Some("16")), "injury_2026_03").due.to_string(),
            "2026-04-16"
        );
        assert_eq!(
            find(&list(Some("02")), "injury_2026_03").due.to_string(),
            "2026-04-15"
        );
    }

    #[test]
    fn tasks_are_due_for_creation_within_the_lead_time_and_not_after_the_due_date() {
        let cal = shipped();
        let f = facts("usn_income", &["org"]);
        let lead = cal
            .events()
            .iter()
            .find(|e| e.id == "usn_declaration_org")
            .unwrap()
            .lead_days;
        let due = NaiveDate::from_ymd_opt(2026, 3, 25).unwrap();
        let opens = due - chrono::Days::new(u64::from(lead));
        let has = |today: NaiveDate| {
            cal.due_for_creation(&f, None, today, &production())
                .unwrap()
                .iter()
                .any(|o| o.event == "usn_declaration_org")
        };
        assert!(!has(opens.pred_opt().unwrap()));
        assert!(has(opens));
        assert!(has(due));
        assert!(!has(due.succ_opt().unwrap()));
    }

    fn patent(from: (i32, u32, u32), to: (i32, u32, u32)) -> Patent {
        let d = |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        Patent {
            inn: crate::ids::Inn::parse("500100732259").unwrap(),
            number: "1".into(),
            from: d(from),
            to: d(to),
            region: None,
        }
    }

    fn payments(p: &Patent) -> Vec<(String, String)> {
        shipped()
            .patent_payments(p, None, &production())
            .unwrap()
            .into_iter()
            .map(|o| (o.event, o.due.to_string()))
            .collect()
    }

    #[test]
    fn exactly_six_months_is_paid_in_two_parts_and_a_day_less_at_once() {
        // 01.03 + 90 days = Sat 30.05 → Mon 01.06; the last day Mon 31.08.
        assert_eq!(
            payments(&patent((2026, 3, 1), (2026, 8, 31))),
            vec![
                ("psn_payment_first".into(), "2026-06-01".into()),
                ("psn_payment_rest".into(), "2026-08-31".into()),
            ]
        );
        let less = payments(&patent((2026, 3, 1), (2026, 8, 30)));
        assert_eq!(
            less,
            vec![("psn_payment_full".into(), "2026-08-31".into())],
            "Sun 30.08 → Mon 31.08"
        );
    }

    #[test]
    fn a_patent_ending_on_31_december_is_paid_by_28_december_moved_off_a_weekend() {
        // 28.12.2025 is a Sunday: the payment moves to Monday 29.12.
        assert_eq!(
            payments(&patent((2025, 10, 1), (2025, 12, 31))),
            vec![("psn_payment_full".into(), "2025-12-29".into())]
        );
        assert_eq!(
            payments(&patent((2025, 11, 1), (2025, 12, 30))),
            vec![("psn_payment_full".into(), "2025-12-30".into())]
        );
    }
}

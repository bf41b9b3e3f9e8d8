//! The firm's directory: clients (with their tax regime, responsible accountant and contact addresses), the
//! firm's staff and their absences; the lookups the pipeline needs (client by INN or sender address) and the
//! rule for who works a task on a given day.
//!
//! [`Directory`] is an in-memory snapshot loaded once per run: every lookup is pure, so classification never
//! waits on the database. The CSV import (parsing and row validation) lives in [`import`]; checks that need the
//! whole directory (does a client's accountant exist?) live in [`Directory::validate`], because an import of
//! clients alone must be checked against the accountants already stored.

pub mod import;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::{Inn, Kpp};

pub use import::{
    parse_absences_csv, parse_absences_csv_with, parse_accountants_csv, parse_accountants_csv_with,
    parse_clients_csv, parse_clients_csv_with, parse_patents_csv, parse_patents_csv_with,
    ImportError, RowProblem,
};
pub use text::{CsvFormat, Delimiter, TextEncoding};

/// A value that is not one of an enumeration's names (`regime`, `role`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}: expected one of {expected}")]
pub struct UnknownName {
    /// What was being parsed (`regime`, `role`).
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

/// A client's tax regime (налоговый режим).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// УСН «доходы».
    UsnIncome,
    /// УСН «доходы минус расходы».
    UsnIncomeExpense,
    /// ОСНО, the general regime.
    Osno,
    /// ПСН, the patent system (ИП only).
    Psn,
    /// ЕСХН, the agricultural tax.
    Eshn,
    /// АУСН, the automated simplified system.
    Ausn,
    /// НПД, the professional-income tax (self-employed).
    Npd,
}

impl Regime {
    /// Every regime, in declaration order.
    pub const ALL: [Regime; 7] = [
        Regime::UsnIncome,
        Regime::UsnIncomeExpense,
        Regime::Osno,
        Regime::Psn,
        Regime::Eshn,
        Regime::Ausn,
        Regime::Npd,
    ];

    /// The name used in CSV files, the database and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::UsnIncome => "usn_income",
            Regime::UsnIncomeExpense => "usn_income_expense",
            Regime::Osno => "osno",
            Regime::Psn => "psn",
            Regime::Eshn => "eshn",
            Regime::Ausn => "ausn",
            Regime::Npd => "npd",
        }
    }
}

impl FromStr for Regime {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Regime, UnknownName> {
        Regime::ALL
            .into_iter()
            .find(|regime| regime.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "regime",
                value: s.to_owned(),
                expected: "usn_income, usn_income_expense, osno, psn, eshn, ausn, npd",
            })
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a member of staff does; tasks are routed by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Keeps clients' books; responsible for their tax-office demands.
    Accountant,
    /// Legal questions.
    Lawyer,
    /// Personnel records (кадры).
    Hr,
    /// Payroll (зарплата).
    Payroll,
    /// Heads a team; receives escalations.
    Manager,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 5] = [
        Role::Accountant,
        Role::Lawyer,
        Role::Hr,
        Role::Payroll,
        Role::Manager,
    ];

    /// The name used in CSV files, the database and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Accountant => "accountant",
            Role::Lawyer => "lawyer",
            Role::Hr => "hr",
            Role::Payroll => "payroll",
            Role::Manager => "manager",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Role, UnknownName> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "role",
                value: s.to_owned(),
                expected: "accountant, lawyer, hr, payroll, manager",
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One client of the firm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Name as the firm writes it (`ООО «Ветер-Снаб»`, `ИП Богданов Павел Сергеевич`).
    pub name: String,
    /// The client's INN; 12 digits for an individual entrepreneur.
    pub inn: Inn,
    /// KPP of the head office; `None` for an ИП (who has none) or when unknown.
    pub kpp: Option<Kpp>,
    /// Tax regime.
    pub regime: Regime,
    /// Whether the client employs staff (payroll and personnel reporting apply).
    pub has_employees: bool,
    /// Whether the client pays VAT.
    pub vat_payer: bool,
    /// E-mail of the responsible accountant (lower-case).
    pub accountant: String,
    /// E-mail of the accountant who stands in when the responsible one is away (lower-case).
    pub backup_accountant: Option<String>,
    /// Addresses the client writes from, lower-case; `@domain` entries (kept with the `@`) stand for every
    /// address of that domain.
    pub emails: Vec<String>,
    /// Two-digit region code for the regional production calendar; `None` = federal.
    pub region: Option<String>,
    /// Further flags the tax calendar uses (`property`, `vehicles`, `land`, `profit_monthly`).
    pub attributes: Vec<String>,
}

impl Client {
    /// An individual entrepreneur (ИП): a client whose INN has 12 digits.
    pub fn is_individual(&self) -> bool {
        self.inn.is_individual()
    }
}

/// One member of the firm's staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accountant {
    /// Work e-mail, lower-case; the person's identity everywhere.
    pub email: String,
    /// Full name.
    pub name: String,
    /// What they do.
    pub role: Role,
    /// E-mail of their manager, for escalations.
    pub manager: Option<String>,
}

/// A period when a member of staff is away (both ends inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absence {
    /// Who is away (lower-case e-mail).
    pub email: String,
    /// First day away.
    pub from: NaiveDate,
    /// Last day away.
    pub to: NaiveDate,
    /// Who stands in; `None` = for each client, that client's backup accountant.
    pub substitute: Option<String>,
}

impl Absence {
    /// Whether `day` falls in this absence.
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

/// A patent of an ИП on the patent system (ПСН): its number and term. Payment dates depend on each patent's start
/// and end (п. 2 ст. 346.51 НК РФ), so the tax calendar generates them per patent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patent {
    /// The ИП holding it.
    pub inn: Inn,
    /// The patent's number as the tax office wrote it.
    pub number: String,
    /// First and last day of its term (within one calendar year).
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Two-digit code of the region it was issued in, when the file says.
    pub region: Option<String>,
}

/// An in-memory snapshot of the directory, loaded once per run; every lookup is pure (no I/O).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Clients by INN.
    clients: BTreeMap<String, Client>,
    /// Exact contact address → INNs of the clients listing it.
    addresses: BTreeMap<String, BTreeSet<String>>,
    /// Domain (without `@`) → INNs of the clients listing `@domain`.
    domains: BTreeMap<String, BTreeSet<String>>,
    /// Staff by e-mail.
    accountants: BTreeMap<String, Accountant>,
    /// Absences ordered by person, then start date.
    absences: Vec<Absence>,
    /// Patents by the INN of their holder, in start order.
    patents: BTreeMap<String, Vec<Patent>>,
}

/// How many hand-overs [`Directory::assignee`] follows before giving up: far more than any real chain of
/// stand-ins, small enough that a malformed directory cannot stall a run. Cycles are cut separately.
const MAX_HANDOVERS: usize = 32;

impl Directory {
    /// Builds the snapshot. E-mail addresses are compared in lower case, so they are normalised here whatever the
    /// source; a repeated INN or accountant e-mail keeps the later entry (the parsers reject repeats in a file).
    pub fn new(
        clients: Vec<Client>,
        accountants: Vec<Accountant>,
        absences: Vec<Absence>,
    ) -> Directory {
        let mut directory = Directory::default();
        for mut client in clients {
            client.accountant = normalise_address(&client.accountant);
            client.backup_accountant = client.backup_accountant.as_deref().map(normalise_address);
            client.emails = client.emails.iter().map(|e| normalise_address(e)).collect();
            directory
                .clients
                .insert(client.inn.as_str().to_owned(), client);
        }
        for client in directory.clients.values() {
            let inn = client.inn.as_str().to_owned();
            for entry in &client.emails {
                match entry.strip_prefix('@') {
                    Some(domain) => directory
                        .domains
                        .entry(domain.to_owned())
                        .or_default()
                        .insert(inn.clone()),
                    None => directory
                        .addresses
                        .entry(entry.clone())
                        .or_default()
                        .insert(inn.clone()),
                };
            }
        }
        for mut accountant in accountants {
            accountant.email = normalise_address(&accountant.email);
            accountant.manager = accountant.manager.as_deref().map(normalise_address);
            directory
                .accountants
                .insert(accountant.email.clone(), accountant);
        }
        directory.absences = absences
            .into_iter()
            .map(|mut absence| {
                absence.email = normalise_address(&absence.email);
                absence.substitute = absence.substitute.as_deref().map(normalise_address);
                absence
            })
            .collect();
        directory
            .absences
            .sort_by(|a, b| (&a.email, a.from, a.to).cmp(&(&b.email, b.from, b.to)));
        directory
    }

    /// Checks what only the whole directory can tell: every person a client, an accountant's `manager` or an
    /// absence names is on the staff. Returns every problem found, in INN / e-mail order.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut require = |who: &str, what: &str, email: &str| {
            if !self.accountants.contains_key(email) {
                problems.push(format!(
                    "{who}: {what} {email} is not on the staff (accountants.csv)"
                ));
            }
        };
        for client in self.clients.values() {
            let who = format!("client {} ({})", client.inn, client.name);
            require(&who, "accountant", &client.accountant);
            if let Some(backup) = &client.backup_accountant {
                require(&who, "backup_accountant", backup);
            }
        }
        for accountant in self.accountants.values() {
            if let Some(manager) = &accountant.manager {
                require(&accountant.email, "manager", manager);
            }
        }
        for absence in &self.absences {
            let who = format!("absence of {} from {}", absence.email, absence.from);
            require(&who, "person", &absence.email);
            if let Some(substitute) = &absence.substitute {
                require(&who, "substitute", substitute);
            }
        }
        for patent in self.patents() {
            let who = format!("patent {} of {}", patent.number, patent.inn);
            match self.clients.get(patent.inn.as_str()) {
                None => problems.push(format!("{who}: no such client in the directory")),
                Some(c) if !c.is_individual() => problems.push(format!(
                    "{who}: only an individual entrepreneur (12-digit INN) holds patents"
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The directory with `patents` as its patents (replacing any it had).
    pub fn with_patents(mut self, patents: Vec<Patent>) -> Directory {
        self.patents.clear();
        for p in patents {
            self.patents
                .entry(p.inn.as_str().to_owned())
                .or_default()
                .push(p);
        }
        for list in self.patents.values_mut() {
            list.sort_by(|a, b| (a.from, &a.number).cmp(&(b.from, &b.number)));
        }
        self
    }

    /// The patents of the client with this INN, in start order.
    pub fn patents_of(&self, inn: &str) -> &[Patent] {
        self.patents.get(inn.trim()).map_or(&[], Vec::as_slice)
    }

    /// Every patent, by holder then start.
    pub fn patents(&self) -> impl Iterator<Item = &Patent> {
        self.patents.values().flatten()
    }

    /// The client with this INN (surrounding spaces ignored).
    pub fn client(&self, inn: &str) -> Option<&Client> {
        self.clients.get(inn.trim())
    }

    /// The client a sender address belongs to: an exact address of the directory first, then the address's domain
    /// against `@domain` entries. Case-insensitive; a header's `Name <address>` form is accepted.
    ///
    /// An address may belong to several clients (an owner of two companies writes from one mailbox); then this
    /// returns the first of them in INN order — a stable choice, not a meaningful one. Callers that can do better
    /// (an INN in the text) use [`Directory::clients_by_email`] to see the ambiguity.
    pub fn client_by_email(&self, address: &str) -> Option<&Client> {
        self.clients_by_email(address).into_iter().next()
    }

    /// Every client a sender address belongs to, in INN order: those listing the exact address, or, when none
    /// does, those listing the address's `@domain`. A domain entry matches that domain only, not its subdomains.
    pub fn clients_by_email(&self, address: &str) -> Vec<&Client> {
        let address = normalise_address(address);
        let inns = match self.addresses.get(&address) {
            Some(inns) => Some(inns),
            None => address
                .rsplit_once('@')
                .and_then(|(_, domain)| self.domains.get(domain)),
        };
        inns.into_iter()
            .flatten()
            .filter_map(|inn| self.clients.get(inn))
            .collect()
    }

    /// The member of staff with this e-mail (case-insensitive).
    pub fn accountant(&self, email: &str) -> Option<&Accountant> {
        self.accountants.get(&normalise_address(email))
    }

    /// All clients, in INN order.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// All staff, in e-mail order.
    pub fn accountants(&self) -> impl Iterator<Item = &Accountant> {
        self.accountants.values()
    }

    /// All absences, by person and start date.
    pub fn absences(&self) -> &[Absence] {
        &self.absences
    }

    /// Whether `email` is away on `on`.
    pub fn is_absent(&self, email: &str, on: NaiveDate) -> bool {
        self.absence_on(&normalise_address(email), on).is_some()
    }

    /// Who works a task of `role` for `client` (`None` = no client identified) on date `on`.
    ///
    /// - `Role::Accountant`: the client's accountant; when away that day, the absence's substitute, or (no
    ///   substitute given) the client's backup accountant; stand-ins who are away are followed the same way, with
    ///   cycles cut. Someone no longer on the staff (deactivated) counts as away for good, without substitute.
    ///   `None` without a client, or when the chain ends with nobody available — the task then goes to the
    ///   unassigned queue, where a person sees it, rather than to someone who is away.
    /// - Other roles: the first person with that role (e-mail order) who is not away; when all are away, the
    ///   first available stand-in along their absences' substitutes. `None` when the directory has nobody with
    ///   that role or nobody is available.
    pub fn assignee(&self, client: Option<&Client>, role: Role, on: NaiveDate) -> Option<String> {
        if role == Role::Accountant {
            let client = client?;
            return self.available_from(
                &client.accountant,
                client.backup_accountant.as_deref(),
                on,
            );
        }
        let people: Vec<&str> = self
            .accountants
            .values()
            .filter(|person| person.role == role)
            .map(|person| person.email.as_str())
            .collect();
        if let Some(present) = people
            .iter()
            .find(|email| self.absence_on(email, on).is_none())
        {
            return Some((*present).to_owned());
        }
        // The client's backup accountant stands in for the client's accountant only, not for payroll or hr.
        people
            .iter()
            .find_map(|email| self.available_from(email, None, on))
    }

    /// The manager of a member of staff, for escalations.
    pub fn manager_of(&self, email: &str) -> Option<&str> {
        self.accountant(email)?.manager.as_deref()
    }

    /// The absence of `email` (already normalised) covering `on`.
    fn absence_on(&self, email: &str, on: NaiveDate) -> Option<&Absence> {
        self.absences
            .iter()
            .find(|absence| absence.email == email && absence.covers(on))
    }

    /// Follows stand-ins from `first` until someone is not away on `on`. An absence without a substitute hands
    /// over to `backup` (the client's backup accountant), if any.
    fn available_from(&self, first: &str, backup: Option<&str>, on: NaiveDate) -> Option<String> {
        let mut visited = BTreeSet::new();
        let mut person = normalise_address(first);
        for _ in 0..MAX_HANDOVERS {
            // Someone no longer on the staff (deactivated, `user disable`) is away for good, with no substitute.
            let substitute =
                if self.accountants.is_empty() || self.accountants.contains_key(&person) {
                    let Some(absence) = self.absence_on(&person, on) else {
                        return Some(person);
                    };
                    absence.substitute.clone()
                } else {
                    None
                };
            visited.insert(person);
            let next = match (substitute, backup) {
                (Some(substitute), _) => substitute,
                (None, Some(backup)) => normalise_address(backup),
                (None, None) => return None,
            };
            if visited.contains(&next) {
                return None;
            }
            person = next;
        }
        None
    }
}

/// The form every address is compared in: trimmed, lower case, and taken out of angle brackets when a header's
/// `Name <address>` form was passed in.
fn normalise_address(address: &str) -> String {
    let trimmed = address.trim();
    let inner = trimmed
        .rfind('<')
        .and_then(|start| {
            let rest = &trimmed[start + 1..];
            rest.find('>').map(|end| &rest[..end])
        })
        .unwrap_or(trimmed);
    inner.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENTS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/clients.csv"
    ));
    const ACCOUNTANTS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/accountants.csv"
    ));
    const ABSENCES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/absences.csv"
    ));

    fn corpus() -> Directory {
        Directory::new(
            parse_clients_csv("clients.csv", CLIENTS).expect("corpus clients parse"),
            parse_accountants_csv("accountants.csv", ACCOUNTANTS)
                .expect("corpus accountants parse"),
            parse_absences_csv("absences.csv", ABSENCES).expect("corpus absences parse"),
        )
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    fn client(inn: &str, accountant: &str, backup: Option<&str>, emails: &[&str]) -> Client {
        Client {
            name: format!("Client {inn}"),
            inn: Inn::parse(inn).expect("test INN"),
            kpp: None,
            regime: Regime::Osno,
            has_employees: false,
            vat_payer: false,
            accountant: accountant.to_owned(),
            backup_accountant: backup.map(str::to_owned),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
            region: None,
            attributes: Vec::new(),
        }
    }

    fn person(email: &str, role: Role) -> Accountant {
        Accountant {
            email: email.to_owned(),
            name: email.to_owned(),
            role,
            manager: None,
        }
    }

    fn away(email: &str, from: &str, to: &str, substitute: Option<&str>) -> Absence {
        Absence {
            email: email.to_owned(),
            from: d(from),
            to: d(to),
            substitute: substitute.map(str::to_owned),
        }
    }

    #[test]
    fn the_corpus_directory_parses_fully_and_validates() {
        let directory = corpus();
        assert_eq!(directory.clients().count(), 60);
        assert_eq!(directory.accountants().count(), 12);
        assert_eq!(directory.absences().len(), 5);
        assert_eq!(directory.validate(), Ok(()));
    }

    #[test]
    fn a_client_is_found_by_inn() {
        let directory = corpus();
        let found = directory.client("7703612056").expect("in the corpus");
        assert_eq!(found.name, "ООО «Ветер-Снаб»");
        assert_eq!(found.kpp.as_ref().map(|k| k.as_str()), Some("770301001"));
        assert!(directory.client("7703612057").is_none());
    }

    #[test]
    fn a_twelve_digit_inn_makes_a_client_an_individual_entrepreneur() {
        let directory = corpus();
        assert!(directory
            .client("770334700943")
            .expect("ИП Богданов")
            .is_individual());
        assert!(!directory.client("7703612056").expect("ООО").is_individual());
    }

    #[test]
    fn a_sender_is_matched_by_exact_address_ignoring_case_and_angle_brackets() {
        let directory = corpus();
        for address in [
            "office@veter-snab.example",
            "Office@Veter-Snab.EXAMPLE",
            " <belyaev.n401@mail.ru> ",
        ] {
            let found = directory.client_by_email(address).map(|c| c.inn.as_str());
            assert_eq!(found, Some("7703612056"), "{address}");
        }
    }

    #[test]
    fn a_sender_is_matched_by_the_domain_of_an_at_domain_entry() {
        let directory = corpus();
        let found = directory.client_by_email("Someone.New@Volzhskiy-Parus.example");
        assert_eq!(found.map(|c| c.inn.as_str()), Some("7703714749"));
    }

    #[test]
    fn a_domain_entry_does_not_match_subdomains_or_other_domains() {
        let directory = corpus();
        assert!(directory
            .client_by_email("a@mail.volzhskiy-parus.example")
            .is_none());
        assert!(directory.client_by_email("a@veter-snab.example").is_none());
        assert!(directory.client_by_email("not an address").is_none());
    }

    #[test]
    fn an_exact_address_wins_over_another_clients_domain() {
        let directory = Directory::new(
            vec![
                client("7728997898", "a@firm.example", None, &["@group.example"]),
                client(
                    "1650991230",
                    "a@firm.example",
                    None,
                    &["boss@group.example"],
                ),
            ],
            vec![],
            vec![],
        );
        let found = directory.clients_by_email("boss@group.example");
        assert_eq!(
            found.iter().map(|c| c.inn.as_str()).collect::<Vec<_>>(),
            ["1650991230"]
        );
        let other = directory.client_by_email("clerk@group.example");
        assert_eq!(other.map(|c| c.inn.as_str()), Some("7728997898"));
    }

    #[test]
    fn an_address_of_two_clients_returns_both_and_the_first_by_inn() {
        let directory = Directory::new(
            vec![
                client(
                    "7728997898",
                    "a@firm.example",
                    None,
                    &["owner@mail.example"],
                ),
                client(
                    "1650991230",
                    "a@firm.example",
                    None,
                    &["OWNER@mail.example"],
                ),
            ],
            vec![],
            vec![],
        );
        let all = directory.clients_by_email("owner@mail.example");
        assert_eq!(
            all.iter().map(|c| c.inn.as_str()).collect::<Vec<_>>(),
            ["1650991230", "7728997898"]
        );
        assert_eq!(
            directory
                .client_by_email("owner@mail.example")
                .map(|c| c.inn.as_str()),
            Some("1650991230")
        );
    }

    #[test]
    fn an_absent_accountant_is_replaced_by_the_named_substitute() {
        let directory = corpus();
        let volzhskiy = directory.client("7703714749"); // accountant ivanova, away 10–23.03.2026 → lebedeva
        let on = |day| directory.assignee(volzhskiy, Role::Accountant, d(day));
        assert_eq!(
            on("2026-03-09").as_deref(),
            Some("ivanova@debet-service.example")
        );
        assert_eq!(
            on("2026-03-10").as_deref(),
            Some("lebedeva@debet-service.example")
        );
        assert_eq!(
            on("2026-03-23").as_deref(),
            Some("lebedeva@debet-service.example")
        );
        assert_eq!(
            on("2026-03-24").as_deref(),
            Some("ivanova@debet-service.example")
        );
    }

    #[test]
    fn an_absence_without_substitute_hands_the_client_to_its_backup_accountant() {
        let directory = corpus();
        let bogdanov = directory.client("770334700943"); // morozova, away 18–28.05.2026, backup novikova
        assert_eq!(
            directory
                .assignee(bogdanov, Role::Accountant, d("2026-05-20"))
                .as_deref(),
            Some("novikova@debet-service.example")
        );
    }

    #[test]
    fn an_accountant_no_longer_on_the_staff_hands_the_client_to_its_backup_or_nobody() {
        let staff = parse_accountants_csv("accountants.csv", ACCOUNTANTS)
            .expect("corpus accountants parse")
            .into_iter()
            .filter(|a| a.email != "morozova@debet-service.example")
            .collect();
        let directory = Directory::new(
            vec![
                client(
                    "770334700943",
                    "morozova@debet-service.example",
                    Some("novikova@debet-service.example"),
                    &[],
                ),
                client("7728997898", "morozova@debet-service.example", None, &[]),
            ],
            staff,
            Vec::new(),
        );
        let on = d("2026-03-02");
        let with_backup = directory.client("770334700943");
        assert_eq!(
            directory
                .assignee(with_backup, Role::Accountant, on)
                .as_deref(),
            Some("novikova@debet-service.example")
        );
        let without = directory.client("7728997898");
        assert_eq!(directory.assignee(without, Role::Accountant, on), None);
    }

    #[test]
    fn stand_ins_who_are_away_too_are_followed_along_the_chain() {
        let directory = Directory::new(
            vec![client(
                "7728997898",
                "a@firm.example",
                Some("b@firm.example"),
                &[],
            )],
            vec![],
            vec![
                away("a@firm.example", "2026-03-01", "2026-03-31", None),
                away(
                    "b@firm.example",
                    "2026-03-10",
                    "2026-03-20",
                    Some("c@firm.example"),
                ),
            ],
        );
        let client = directory.client("7728997898");
        assert_eq!(
            directory
                .assignee(client, Role::Accountant, d("2026-03-05"))
                .as_deref(),
            Some("b@firm.example")
        );
        assert_eq!(
            directory
                .assignee(client, Role::Accountant, d("2026-03-15"))
                .as_deref(),
            Some("c@firm.example")
        );
    }

    #[test]
    fn a_cycle_of_absent_stand_ins_leaves_the_task_unassigned() {
        let directory = Directory::new(
            vec![client("7728997898", "a@firm.example", None, &[])],
            vec![],
            vec![
                away(
                    "a@firm.example",
                    "2026-03-01",
                    "2026-03-31",
                    Some("b@firm.example"),
                ),
                away(
                    "b@firm.example",
                    "2026-03-01",
                    "2026-03-31",
                    Some("a@firm.example"),
                ),
            ],
        );
        assert_eq!(
            directory.assignee(
                directory.client("7728997898"),
                Role::Accountant,
                d("2026-03-15")
            ),
            None
        );
    }

    #[test]
    fn an_absent_accountant_without_substitute_or_backup_leaves_the_task_unassigned() {
        let directory = Directory::new(
            vec![client("7728997898", "a@firm.example", None, &[])],
            vec![],
            vec![away("a@firm.example", "2026-03-01", "2026-03-31", None)],
        );
        assert_eq!(
            directory.assignee(
                directory.client("7728997898"),
                Role::Accountant,
                d("2026-03-15")
            ),
            None
        );
    }

    #[test]
    fn an_accountant_task_without_a_client_is_unassigned() {
        assert_eq!(
            corpus().assignee(None, Role::Accountant, d("2026-03-15")),
            None
        );
    }

    #[test]
    fn a_payroll_task_goes_to_the_payroll_person_whatever_the_client() {
        let directory = corpus();
        let any = directory.client("7703714749");
        assert_eq!(
            directory
                .assignee(any, Role::Payroll, d("2026-03-15"))
                .as_deref(),
            Some("kozlova@debet-service.example")
        );
        assert_eq!(
            directory
                .assignee(None, Role::Lawyer, d("2026-03-15"))
                .as_deref(),
            Some("orlov@debet-service.example")
        );
    }

    #[test]
    fn a_role_task_goes_to_the_first_present_person_of_that_role_in_email_order() {
        let directory = Directory::new(
            vec![],
            vec![
                person("b@firm.example", Role::Hr),
                person("a@firm.example", Role::Hr),
            ],
            vec![away("a@firm.example", "2026-03-01", "2026-03-31", None)],
        );
        assert_eq!(
            directory
                .assignee(None, Role::Hr, d("2026-02-27"))
                .as_deref(),
            Some("a@firm.example")
        );
        assert_eq!(
            directory
                .assignee(None, Role::Hr, d("2026-03-02"))
                .as_deref(),
            Some("b@firm.example")
        );
    }

    #[test]
    fn when_everyone_of_a_role_is_away_their_substitute_takes_the_task() {
        let directory = Directory::new(
            vec![],
            vec![
                person("pay@firm.example", Role::Payroll),
                person("hr@firm.example", Role::Hr),
            ],
            vec![away(
                "pay@firm.example",
                "2026-03-01",
                "2026-03-31",
                Some("hr@firm.example"),
            )],
        );
        assert_eq!(
            directory
                .assignee(None, Role::Payroll, d("2026-03-02"))
                .as_deref(),
            Some("hr@firm.example")
        );
    }

    #[test]
    fn a_role_nobody_has_gives_no_assignee() {
        let directory = Directory::new(
            vec![],
            vec![person("a@firm.example", Role::Accountant)],
            vec![],
        );
        assert_eq!(
            directory.assignee(None, Role::Lawyer, d("2026-03-02")),
            None
        );
    }

    #[test]
    fn absence_dates_are_inclusive() {
        let directory = corpus();
        assert!(!directory.is_absent("ivanova@debet-service.example", d("2026-03-09")));
        assert!(directory.is_absent("IVANOVA@debet-service.example", d("2026-03-10")));
        assert!(directory.is_absent("ivanova@debet-service.example", d("2026-03-23")));
        assert!(!directory.is_absent("ivanova@debet-service.example", d("2026-03-24")));
    }

    #[test]
    fn a_persons_manager_is_looked_up_for_escalation() {
        let directory = corpus();
        assert_eq!(
            directory.manager_of("ivanova@debet-service.example"),
            Some("belova@debet-service.example")
        );
        assert_eq!(directory.manager_of("belova@debet-service.example"), None);
        assert_eq!(directory.manager_of("nobody@debet-service.example"), None);
    }

    #[test]
    fn validation_names_every_person_missing_from_the_staff() {
        let mut manager = person("a@firm.example", Role::Accountant);
        manager.manager = Some("boss@firm.example".to_owned());
        let directory = Directory::new(
            vec![client(
                "7728997898",
                "a@firm.example",
                Some("ghost@firm.example"),
                &[],
            )],
            vec![manager],
            vec![away(
                "a@firm.example",
                "2026-03-01",
                "2026-03-31",
                Some("temp@firm.example"),
            )],
        );
        let problems = directory.validate().expect_err("three unknown people");
        assert_eq!(problems.len(), 3, "{problems:#?}");
        for missing in [
            "ghost@firm.example",
            "boss@firm.example",
            "temp@firm.example",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(missing)),
                "{missing}: {problems:#?}"
            );
        }
    }

    #[test]
    fn regime_and_role_names_round_trip() {
        for regime in Regime::ALL {
            assert_eq!(regime.as_str().parse::<Regime>(), Ok(regime));
        }
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("usn".parse::<Regime>().is_err());
    }
}

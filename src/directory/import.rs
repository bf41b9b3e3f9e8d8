//! Parsing and row-level validation of the directory's CSV files (`clients.csv`, `accountants.csv`,
//! `absences.csv`, `patents.csv`; text already decoded by [`super::text`], header row, `,` or `;` between cells
//! (detected from the header line, or given), `|` separating list items inside a cell).
//!
//! A file is all-or-nothing: every row is parsed first and any bad row makes the whole file an error that names
//! the file, the line (1-based, the header is line 1) and what is wrong — every bad row, so an administrator fixes
//! the file in one pass. Columns are found by their header name, so a spreadsheet that reorders them still
//! imports; unknown or missing columns are errors. Checks that need other files (does the accountant exist?) are
//! [`super::Directory::validate`]'s.

use std::collections::BTreeMap;

use chrono::{Datelike as _, NaiveDate};

use super::text::Delimiter;
use super::{Absence, Accountant, Client, Patent, Regime, Role};
use crate::ids::{Inn, Kpp};

/// Flags the `attributes` column may hold; each switches on part of the tax calendar. A flag outside this list is
/// a typo that would silently drop a deadline, so it is an error.
pub const KNOWN_ATTRIBUTES: [&str; 4] = ["property", "vehicles", "land", "profit_monthly"];

/// One bad row of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// 1-based line of the row (the header is line 1).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Why a directory file was not imported. Nothing of a file with an error is applied.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// One bad row (or a bad header, line 1).
    #[error("{file}:{line}: {message}")]
    Row {
        /// The file's name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Several bad rows, in line order.
    #[error("{file}: {} bad rows, nothing imported: {}", problems.len(), list(file, problems))]
    Rows {
        /// The file's name as given.
        file: String,
        /// Every bad row.
        problems: Vec<RowProblem>,
    },
}

impl ImportError {
    /// Every bad row as `(line, message)`, whichever variant.
    pub fn problems(&self) -> Vec<(usize, &str)> {
        match self {
            ImportError::Row { line, message, .. } => vec![(*line, message.as_str())],
            ImportError::Rows { problems, .. } => problems
                .iter()
                .map(|problem| (problem.line, problem.message.as_str()))
                .collect(),
        }
    }

    fn from_problems(file: &str, mut problems: Vec<RowProblem>) -> ImportError {
        if problems.len() == 1 {
            if let Some(problem) = problems.pop() {
                return ImportError::Row {
                    file: file.to_owned(),
                    line: problem.line,
                    message: problem.message,
                };
            }
        }
        ImportError::Rows {
            file: file.to_owned(),
            problems,
        }
    }
}

fn list(file: &str, problems: &[RowProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{file}:{}: {}", problem.line, problem.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses `clients.csv`: `name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region`
/// and optionally `attributes`. `name` is the file's name for messages.
pub fn parse_clients_csv(name: &str, data: &str) -> Result<Vec<Client>, ImportError> {
    parse_clients_csv_with(name, data, None)
}

/// [`parse_clients_csv`] with the separator given (`None`: detected from the header line).
pub fn parse_clients_csv_with(
    name: &str,
    data: &str,
    delimiter: Option<Delimiter>,
) -> Result<Vec<Client>, ImportError> {
    const REQUIRED: &[&str] = &[
        "name",
        "inn",
        "kpp",
        "regime",
        "has_employees",
        "vat_payer",
        "accountant",
        "backup_accountant",
        "emails",
        "region",
    ];
    let mut first_line_of_inn: BTreeMap<String, usize> = BTreeMap::new();
    parse_file(name, data, delimiter, REQUIRED, &["attributes"], |row| {
        let mut errors = Errors::default();
        let client_name = errors.take(non_empty(row.get("name"), "name"));
        let inn = errors.take(Inn::parse(row.get("inn")).map_err(|e| format!("inn: {e}")));
        let kpp = errors.take(match row.get("kpp") {
            "" => Ok(None),
            kpp => Kpp::parse(kpp).map(Some).map_err(|e| format!("kpp: {e}")),
        });
        if let (Some(inn), Some(Some(_))) = (&inn, &kpp) {
            if inn.is_individual() {
                errors.push("kpp: an individual entrepreneur (12-digit INN) has no KPP".to_owned());
            }
        }
        let regime = errors.take(
            row.get("regime")
                .parse::<Regime>()
                .map_err(|e| format!("regime: {e}")),
        );
        let has_employees = errors.take(boolean(row.get("has_employees"), "has_employees"));
        let vat_payer = errors.take(boolean(row.get("vat_payer"), "vat_payer"));
        let accountant = errors.take(email(row.get("accountant"), "accountant"));
        let backup_accountant = errors.take(optional_email(
            row.get("backup_accountant"),
            "backup_accountant",
        ));
        let emails = errors.take(contact_list(row.get("emails")));
        let region = errors.take(region(row.get("region")));
        let attributes = errors.take(attribute_list(row.get("attributes")));
        if let Some(inn) = &inn {
            if let Some(first) = first_line_of_inn.get(inn.as_str()) {
                errors.push(format!("inn: {inn} is already on line {first}"));
            } else {
                first_line_of_inn.insert(inn.as_str().to_owned(), row.line);
            }
        }
        let (
            Some(name),
            Some(inn),
            Some(kpp),
            Some(regime),
            Some(has_employees),
            Some(vat_payer),
            Some(accountant),
            Some(backup_accountant),
            Some(emails),
            Some(region),
            Some(attributes),
        ) = (
            client_name,
            inn,
            kpp,
            regime,
            has_employees,
            vat_payer,
            accountant,
            backup_accountant,
            emails,
            region,
            attributes,
        )
        else {
            return Err(errors.into_message());
        };
        errors.finish()?;
        Ok(Client {
            name,
            inn,
            kpp,
            regime,
            has_employees,
            vat_payer,
            accountant,
            backup_accountant,
            emails,
            region,
            attributes,
        })
    })
}

/// Parses `accountants.csv`: `email,name,role,manager`.
pub fn parse_accountants_csv(name: &str, data: &str) -> Result<Vec<Accountant>, ImportError> {
    parse_accountants_csv_with(name, data, None)
}

/// [`parse_accountants_csv`] with the separator given (`None`: detected from the header line).
pub fn parse_accountants_csv_with(
    name: &str,
    data: &str,
    delimiter: Option<Delimiter>,
) -> Result<Vec<Accountant>, ImportError> {
    let mut first_line_of: BTreeMap<String, usize> = BTreeMap::new();
    parse_file(
        name,
        data,
        delimiter,
        &["email", "name", "role", "manager"],
        &[],
        |row| {
            let mut errors = Errors::default();
            let address = errors.take(email(row.get("email"), "email"));
            let full_name = errors.take(non_empty(row.get("name"), "name"));
            let role = errors.take(
                row.get("role")
                    .parse::<Role>()
                    .map_err(|e| format!("role: {e}")),
            );
            let manager = errors.take(optional_email(row.get("manager"), "manager"));
            if let Some(address) = &address {
                if let Some(first) = first_line_of.get(address) {
                    errors.push(format!("email: {address} is already on line {first}"));
                } else {
                    first_line_of.insert(address.clone(), row.line);
                }
                if manager
                    .as_ref()
                    .is_some_and(|m| m.as_deref() == Some(address.as_str()))
                {
                    errors.push("manager: a person cannot be their own manager".to_owned());
                }
            }
            let (Some(email), Some(name), Some(role), Some(manager)) =
                (address, full_name, role, manager)
            else {
                return Err(errors.into_message());
            };
            errors.finish()?;
            Ok(Accountant {
                email,
                name,
                role,
                manager,
            })
        },
    )
}

/// Parses `absences.csv`: `email,from,to,substitute` (ISO dates, both inclusive; an empty substitute means each
/// client's backup accountant). Two absences of one person that overlap are an error: which substitute applies
/// on the shared days would be a guess.
pub fn parse_absences_csv(name: &str, data: &str) -> Result<Vec<Absence>, ImportError> {
    parse_absences_csv_with(name, data, None)
}

/// [`parse_absences_csv`] with the separator given (`None`: detected from the header line).
pub fn parse_absences_csv_with(
    name: &str,
    data: &str,
    delimiter: Option<Delimiter>,
) -> Result<Vec<Absence>, ImportError> {
    let mut seen: Vec<(usize, Absence)> = Vec::new();
    parse_file(
        name,
        data,
        delimiter,
        &["email", "from", "to", "substitute"],
        &[],
        |row| {
            let mut errors = Errors::default();
            let address = errors.take(email(row.get("email"), "email"));
            let from = errors.take(date(row.get("from"), "from"));
            let to = errors.take(date(row.get("to"), "to"));
            let substitute = errors.take(optional_email(row.get("substitute"), "substitute"));
            if let (Some(from), Some(to)) = (from, to) {
                if to < from {
                    errors.push(format!("to: {to} is before from {from}"));
                }
            }
            if let (Some(address), Some(Some(substitute))) = (&address, &substitute) {
                if address == substitute {
                    errors.push("substitute: a person cannot stand in for themselves".to_owned());
                }
            }
            let (Some(email), Some(from), Some(to), Some(substitute)) =
                (address, from, to, substitute)
            else {
                return Err(errors.into_message());
            };
            errors.finish()?;
            let absence = Absence {
                email,
                from,
                to,
                substitute,
            };
            let overlap = seen.iter().find(|(_, other)| {
                other.email == absence.email && other.from <= absence.to && absence.from <= other.to
            });
            if let Some((line, _)) = overlap {
                return Err(format!(
                    "{} is already away on some of these days (line {line})",
                    absence.email
                ));
            }
            seen.push((row.line, absence.clone()));
            Ok(absence)
        },
    )
}

/// Parses `patents.csv`: `inn,number,from,to,region`. A patent's term lies within one calendar year (п. 5
/// ст. 346.45 НК РФ); the same number twice for one holder is refused.
pub fn parse_patents_csv(name: &str, data: &str) -> Result<Vec<Patent>, ImportError> {
    parse_patents_csv_with(name, data, None)
}

/// [`parse_patents_csv`] with the separator given (`None`: detected from the header line).
pub fn parse_patents_csv_with(
    name: &str,
    data: &str,
    delimiter: Option<Delimiter>,
) -> Result<Vec<Patent>, ImportError> {
    let mut seen: Vec<(usize, String, String)> = Vec::new();
    parse_file(
        name,
        data,
        delimiter,
        &["inn", "number", "from", "to"],
        &["region"],
        |row| {
            let mut errors = Errors::default();
            let inn = errors.take(Inn::parse(row.get("inn")).map_err(|e| format!("inn: {e}")));
            let number = errors.take(non_empty(row.get("number"), "number"));
            let from = errors.take(date(row.get("from"), "from"));
            let to = errors.take(date(row.get("to"), "to"));
            let region = errors.take(region(row.get("region")));
            if let (Some(from), Some(to)) = (from, to) {
                if to < from {
                    errors.push(format!("to: {to} is before from {from}"));
                } else if to.year() != from.year() {
                    errors.push(format!(
                        "to: {to} is not in the year of from {from} (a patent is issued within one calendar year)"
                    ));
                }
            }
            let (Some(inn), Some(number), Some(from), Some(to), Some(region)) =
                (inn, number, from, to, region)
            else {
                return Err(errors.into_message());
            };
            errors.finish()?;
            if let Some((line, ..)) = seen
                .iter()
                .find(|(_, i, n)| i == inn.as_str() && n == &number)
            {
                return Err(format!(
                    "patent {number} of {inn} is already listed (line {line})"
                ));
            }
            seen.push((row.line, inn.as_str().to_owned(), number.clone()));
            Ok(Patent {
                inn,
                number,
                from,
                to,
                region,
            })
        },
    )
}

/// One data row with its columns found by header name.
struct Row<'a> {
    /// 1-based line where the row starts.
    line: usize,
    record: &'a csv::StringRecord,
    columns: &'a BTreeMap<String, usize>,
}

impl Row<'_> {
    /// The trimmed cell of `column`, or `""` for an optional column the file does not have.
    fn get(&self, column: &str) -> &str {
        self.columns
            .get(column)
            .and_then(|&index| self.record.get(index))
            .map(str::trim)
            .unwrap_or("")
    }
}

/// Reads the header and every row, applying `parse_row`; returns every row's value, or every problem.
fn parse_file<T>(
    file: &str,
    data: &str,
    delimiter: Option<Delimiter>,
    required: &[&str],
    optional: &[&str],
    mut parse_row: impl FnMut(&Row<'_>) -> Result<T, String>,
) -> Result<Vec<T>, ImportError> {
    // Spreadsheet programs write a byte-order mark that would otherwise stick to the first column's name.
    let data = data.strip_prefix('\u{feff}').unwrap_or(data);
    let delimiter = delimiter.unwrap_or_else(|| super::text::detect_delimiter(data));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.byte())
        .has_headers(false)
        .flexible(true)
        .from_reader(data.as_bytes());
    let mut records = reader.records();
    let header_error = |message: String| ImportError::Row {
        file: file.to_owned(),
        line: 1,
        message,
    };
    let expected = || {
        let mut names = required.join(",");
        for name in optional {
            names.push_str(&format!("[,{name}]"));
        }
        names
    };
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(error)) => return Err(header_error(format!("header: {error}"))),
        None => {
            return Err(header_error(format!(
                "empty file: expected the header {}",
                expected()
            )))
        }
    };
    let mut columns = BTreeMap::new();
    for (index, name) in header.iter().enumerate() {
        let name = name.trim().to_lowercase();
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            return Err(header_error(format!(
                "header: unknown column {name:?}; expected {}",
                expected()
            )));
        }
        if columns.insert(name.clone(), index).is_some() {
            return Err(header_error(format!(
                "header: column {name:?} appears twice"
            )));
        }
    }
    if let Some(missing) = required.iter().find(|name| !columns.contains_key(**name)) {
        return Err(header_error(format!(
            "header: missing column {missing:?}; expected {}",
            expected()
        )));
    }
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error
                    .position()
                    .and_then(|position| usize::try_from(position.line()).ok())
                    .unwrap_or(0);
                problems.push(RowProblem {
                    line,
                    message: error.to_string(),
                });
                continue;
            }
        };
        let line = record
            .position()
            .and_then(|position| usize::try_from(position.line()).ok())
            .unwrap_or(0);
        if record.len() != header.len() {
            problems.push(RowProblem {
                line,
                message: format!(
                    "expected {} columns like the header, found {} (a separator inside a value needs \"quotes\")",
                    header.len(),
                    record.len()
                ),
            });
            continue;
        }
        let row = Row {
            line,
            record: &record,
            columns: &columns,
        };
        match parse_row(&row) {
            Ok(value) => values.push(value),
            Err(message) => problems.push(RowProblem { line, message }),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(ImportError::from_problems(file, problems))
    }
}

/// Collects every problem of one row, so a row with three mistakes reports all three.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn take<T>(&mut self, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(message);
                None
            }
        }
    }

    fn push(&mut self, message: String) {
        self.0.push(message);
    }

    /// All problems as one message (only called when a field failed, so never empty).
    fn into_message(self) -> String {
        self.0.join("; ")
    }

    fn finish(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join("; "))
        }
    }
}

fn non_empty(value: &str, column: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("{column}: empty"))
    } else {
        Ok(value.to_owned())
    }
}

fn boolean(value: &str, column: &str) -> Result<bool, String> {
    match value.to_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{column}: {value:?} is not true or false")),
    }
}

/// A person's address: `local@domain.tld`, returned in lower case.
fn email(value: &str, column: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("{column}: empty"));
    }
    let lower = value.to_lowercase();
    match lower.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && is_domain(domain) && !lower.contains(char::is_whitespace) =>
        {
            Ok(lower)
        }
        _ => Err(format!("{column}: {value:?} is not an e-mail address")),
    }
}

fn optional_email(value: &str, column: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        email(value, column).map(Some)
    }
}

fn is_domain(domain: &str) -> bool {
    domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
}

/// The `emails` cell: addresses and `@domain` entries, `|`-separated; lower case, repeats dropped, order kept.
fn contact_list(value: &str) -> Result<Vec<String>, String> {
    let mut entries: Vec<String> = Vec::new();
    for item in value
        .split('|')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let entry = match item.strip_prefix('@') {
            Some(domain) if is_domain(domain) && !domain.contains(char::is_whitespace) => {
                item.to_lowercase()
            }
            Some(_) => return Err(format!("emails: {item:?} is not an @domain entry")),
            None => email(item, "emails")?,
        };
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn region(value: &str) -> Result<Option<String>, String> {
    match value {
        "" => Ok(None),
        code if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(code.to_owned()))
        }
        _ => Err(format!(
            "region: {value:?} is not a two-digit region code (77, 02, 16, …)"
        )),
    }
}

fn attribute_list(value: &str) -> Result<Vec<String>, String> {
    let mut attributes: Vec<String> = Vec::new();
    for item in value
        .split('|')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let item = item.to_lowercase();
        if !KNOWN_ATTRIBUTES.contains(&item.as_str()) {
            return Err(format!(
                "attributes: {item:?} is not one of {}",
                KNOWN_ATTRIBUTES.join(", ")
            ));
        }
        if !attributes.contains(&item) {
            attributes.push(item);
        }
    }
    Ok(attributes)
}

fn date(value: &str, column: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| format!("{column}: {value:?} is not a date (YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENTS_HEADER: &str =
        "name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region\n";
    const GOOD_CLIENT: &str = "ООО «Ромашка»,7728997898,772801001,osno,true,true,A@firm.example,,Info@Romashka.example|@Romashka.example,77\n";

    fn clients(rows: &str) -> Result<Vec<Client>, ImportError> {
        parse_clients_csv("clients.csv", &format!("{CLIENTS_HEADER}{rows}"))
    }

    fn single_problem(error: &ImportError) -> (usize, String) {
        match error {
            ImportError::Row { line, message, .. } => (*line, message.clone()),
            other => panic!("expected one bad row, got {other}"),
        }
    }

    #[test]
    fn a_good_client_row_is_parsed_with_lower_case_addresses() {
        let parsed = clients(GOOD_CLIENT).expect("valid");
        let client = &parsed[0];
        assert_eq!(client.inn.as_str(), "7728997898");
        assert_eq!(client.regime, Regime::Osno);
        assert!(client.has_employees && client.vat_payer);
        assert_eq!(client.accountant, "a@firm.example");
        assert_eq!(client.backup_accountant, None);
        assert_eq!(
            client.emails,
            ["info@romashka.example", "@romashka.example"]
        );
        assert_eq!(client.region.as_deref(), Some("77"));
        assert!(client.attributes.is_empty());
    }

    #[test]
    fn a_wrong_inn_check_digit_names_file_and_line() {
        let error = clients(&format!(
            "{GOOD_CLIENT}{}",
            GOOD_CLIENT.replace("7728997898", "7728997899")
        ))
        .expect_err("bad INN");
        let (line, message) = single_problem(&error);
        assert_eq!(line, 3);
        assert!(
            message.contains("inn") && message.contains("check digit"),
            "{message}"
        );
        assert!(
            error.to_string().starts_with("clients.csv:3: inn:"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_regime_names_file_and_line() {
        let error = clients(&GOOD_CLIENT.replace("osno", "usn")).expect_err("bad regime");
        assert!(
            error.to_string().starts_with("clients.csv:2: regime:"),
            "{error}"
        );
        assert!(error.to_string().contains("usn_income_expense"), "{error}");
    }

    #[test]
    fn a_row_with_the_wrong_number_of_columns_names_file_and_line() {
        let error =
            clients(&format!("{GOOD_CLIENT}ООО Запятая, Лтд,7728997898\n")).expect_err("columns");
        let (line, message) = single_problem(&error);
        assert_eq!(line, 3);
        assert!(message.contains("expected 10 columns"), "{message}");
    }

    #[test]
    fn every_bad_row_is_reported_and_nothing_of_the_file_is_returned() {
        let rows = format!(
            "{}{GOOD_CLIENT}{}",
            GOOD_CLIENT
                .replace("true,true", "yes,true")
                .replace("7728997898", "9999000013"),
            GOOD_CLIENT
                .replace("7728997898", "1650991230")
                .replace(",77\n", ",7\n")
        );
        let error = clients(&rows).expect_err("two bad rows");
        let lines: Vec<usize> = error.problems().iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 4]);
        assert!(
            error.to_string().contains("clients.csv:4: region"),
            "{error}"
        );
    }

    #[test]
    fn a_repeated_inn_names_the_first_line() {
        let error = clients(&format!("{GOOD_CLIENT}{GOOD_CLIENT}")).expect_err("repeat");
        assert_eq!(
            single_problem(&error),
            (3, "inn: 7728997898 is already on line 2".to_owned())
        );
    }

    #[test]
    fn an_individual_entrepreneur_with_a_kpp_is_rejected() {
        let row = GOOD_CLIENT.replace("7728997898", "770334700943");
        let error = clients(&row).expect_err("ИП with KPP");
        assert!(single_problem(&error).1.contains("no KPP"), "{error}");
        let without_kpp = row.replace("772801001", "");
        assert!(clients(&without_kpp).expect("ИП without KPP")[0].is_individual());
    }

    #[test]
    fn the_optional_attributes_column_is_read_and_checked() {
        let header = CLIENTS_HEADER.replace("region\n", "region,attributes\n");
        let good = GOOD_CLIENT.replace(",77\n", ",77,property|Land\n");
        let parsed = parse_clients_csv("clients.csv", &format!("{header}{good}")).expect("valid");
        assert_eq!(parsed[0].attributes, ["property", "land"]);
        let bad = GOOD_CLIENT.replace(",77\n", ",77,yacht\n");
        let error =
            parse_clients_csv("clients.csv", &format!("{header}{bad}")).expect_err("unknown flag");
        assert!(error.to_string().contains("yacht"), "{error}");
    }

    #[test]
    fn columns_are_found_by_header_name_and_a_byte_order_mark_is_ignored() {
        let data = "\u{feff}inn,name,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region\n\
                    7728997898,ООО «Ромашка»,,osno,false,false,a@firm.example,b@firm.example,,\n";
        let parsed = parse_clients_csv("clients.csv", data).expect("valid");
        assert_eq!(parsed[0].name, "ООО «Ромашка»");
        assert_eq!(
            parsed[0].backup_accountant.as_deref(),
            Some("b@firm.example")
        );
    }

    #[test]
    fn an_unknown_or_missing_column_is_a_header_error_on_line_1() {
        let unknown = parse_clients_csv("clients.csv", &CLIENTS_HEADER.replace("region", "regoin"))
            .expect_err("unknown column");
        assert!(
            unknown
                .to_string()
                .starts_with("clients.csv:1: header: unknown column \"regoin\""),
            "{unknown}"
        );
        let missing =
            parse_accountants_csv("accountants.csv", "email,name,role\n").expect_err("missing");
        assert!(
            missing.to_string().contains("missing column \"manager\""),
            "{missing}"
        );
        let empty = parse_absences_csv("absences.csv", "").expect_err("empty");
        assert!(empty.to_string().starts_with("absences.csv:1:"), "{empty}");
    }

    #[test]
    fn a_bad_absence_date_names_file_and_line() {
        let data = "email,from,to,substitute\na@firm.example,2026-03-01,2026-03-05,\nb@firm.example,2026-02-30,2026-03-05,\n";
        let error = parse_absences_csv("absences.csv", data).expect_err("bad date");
        assert!(
            error
                .to_string()
                .starts_with("absences.csv:3: from: \"2026-02-30\""),
            "{error}"
        );
    }

    #[test]
    fn an_absence_ending_before_it_starts_is_rejected() {
        let data =
            "email,from,to,substitute\na@firm.example,2026-03-05,2026-03-01,b@firm.example\n";
        let error = parse_absences_csv("absences.csv", data).expect_err("reversed");
        assert!(error.to_string().contains("before"), "{error}");
    }

    #[test]
    fn overlapping_absences_of_one_person_are_rejected() {
        let data = "email,from,to,substitute\n\
                    a@firm.example,2026-03-01,2026-03-10,b@firm.example\n\
                    a@firm.example,2026-03-10,2026-03-20,c@firm.example\n\
                    b@firm.example,2026-03-05,2026-03-06,\n";
        let error = parse_absences_csv("absences.csv", data).expect_err("overlap");
        assert_eq!(single_problem(&error).0, 3);
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn an_accountant_row_needs_a_known_role_and_a_valid_address() {
        let data = "email,name,role,manager\nnot-an-address,Иванова,accountant,\nb@firm.example,Петрова,boss,\n";
        let error = parse_accountants_csv("accountants.csv", data).expect_err("two bad rows");
        let problems = error.problems();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, 2);
        assert!(problems[0].1.starts_with("email:"), "{error}");
        assert_eq!(problems[1].0, 3);
        assert!(problems[1].1.starts_with("role:"), "{error}");
    }

    #[test]
    fn a_quoted_name_with_a_comma_is_one_cell() {
        let row = GOOD_CLIENT.replace("ООО «Ромашка»", "\"Ромашка, ООО\"");
        assert_eq!(clients(&row).expect("valid")[0].name, "Ромашка, ООО");
    }
}

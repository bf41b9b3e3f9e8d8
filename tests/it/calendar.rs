//! The tax calendar end to end: `calendar --format jsonl` against the 2026 table of `tests/domain/` for every
//! regime and attribute combination, regional shifts, the ICS feed, and `calendar generate` creating each task once
//! on both engines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use chrono::NaiveDate;
use taxinbox::calendar::obligations::{generate, CalendarData, ObligationLine};
use taxinbox::calendar::tax::{Applies, ClientFacts};
use taxinbox::directory::Directory;

use crate::helpers::{project_root, Engine, TestApp};

fn taxinbox(app: &TestApp) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taxinbox"));
    c.arg("--config").arg(&app.config).env_remove("RUST_LOG");
    c
}

/// A valid INN from `base` digits (8 for an organisation, 10 for an ИП), check digits appended.
fn inn(base: &str) -> String {
    fn check(digits: &[u32], weights: &[u32]) -> u32 {
        digits.iter().zip(weights).map(|(d, w)| d * w).sum::<u32>() % 11 % 10
    }
    let mut d: Vec<u32> = base.chars().map(|c| c.to_digit(10).unwrap()).collect();
    if d.len() == 9 {
        d.push(check(&d, &[2, 4, 10, 3, 5, 9, 4, 6, 8]));
    } else {
        assert_eq!(d.len(), 10);
        d.push(check(&d, &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]));
        d.push(check(&d, &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]));
    }
    d.iter().map(|x| x.to_string()).collect()
}

const REGIMES: [&str; 7] = [
    "usn_income",
    "usn_income_expense",
    "osno",
    "psn",
    "eshn",
    "ausn",
    "npd",
];
const ATTRIBUTES: [&str; 4] = ["property", "vehicles", "land", "profit_monthly"];
const ACCOUNTANT: &str = "ivanova@debet-service.example";

/// Writes a clients CSV with one client per regime × org/ИП × employees × VAT × subset of attributes (896), all
/// in `region` (empty = federal); returns the path.
fn all_combinations_csv(dir: &Path, region: &str) -> std::path::PathBuf {
    let mut csv = String::from(
        "name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region,attributes\n",
    );
    let mut n = 0u32;
    for regime in REGIMES {
        for ip in [false, true] {
            for employees in [false, true] {
                for vat in [false, true] {
                    for mask in 0..16u32 {
                        n += 1;
                        let attributes: Vec<&str> = ATTRIBUTES
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, a)| *a)
                            .collect();
                        let (inn, kpp, name) = if ip {
                            (
                                inn(&format!("77{n:08}")),
                                String::new(),
                                format!("ИП Тестов {n}"),
                            )
                        } else {
                            (
                                inn(&format!("77{n:07}")),
                                "770101001".to_owned(),
                                format!("ООО «Тест {n}»"),
                            )
                        };
                        csv.push_str(&format!(
                            "{name},{inn},{kpp},{regime},{employees},{vat},{ACCOUNTANT},,c{n}@client.example,{region},{}\n",
                            attributes.join("|")
                        ));
                    }
                }
            }
        }
    }
    let path = dir.join(format!("clients-{region}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

async fn import(app: &TestApp, clients: &Path) {
    taxinbox::directory_import::import_files(
        &app.app.store,
        clients,
        Some(&crate::helpers::corpus().join("accountants.csv")),
        None,
        None,
    )
    .await
    .expect("import the synthetic register");
}

async fn directory(app: &TestApp) -> Directory {
    let mut conn = app.app.store.acquire().await.unwrap();
    taxinbox::store::load_directory(&mut conn).await.unwrap()
}

/// One row of `tests/domain/tax-calendar-2026.tsv`.
struct Row {
    event: String,
    title: String,
    applies: Applies,
    period: String,
    due: String,
}

fn table() -> Vec<Row> {
    let path = project_root().join("tests/domain/tax-calendar-2026.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                event: f[0].to_owned(),
                title: f[1].to_owned(),
                applies: Applies::parse(f[2]).unwrap_or_else(|e| panic!("{}: {e}", f[0])),
                period: f[3].to_owned(),
                due: f[5].to_owned(),
            }
        })
        .collect()
}

fn calendar_jsonl(app: &TestApp, args: &[&str]) -> Vec<ObligationLine> {
    let out = taxinbox(app)
        .arg("calendar")
        .args(args)
        .args(["--format", "jsonl"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            for field in ["client_inn", "event", "title", "period", "due", "assignee"] {
                assert!(v.get(field).is_some(), "{field} missing in {l}");
            }
            serde_json::from_value(v).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_jsonl_gives_exactly_the_applicable_2026_table_rows_for_every_regime_and_attribute_combination(
) {
    let app = TestApp::new(Engine::Sqlite).await;
    import(&app, &all_combinations_csv(app.dir.path(), "")).await;
    let directory = directory(&app).await;
    let rows = table();

    // Expected: every row whose `applies` holds for the client, keyed by (client, event, period).
    let mut expected: BTreeMap<(String, String, String), (&str, &str)> = BTreeMap::new();
    for client in directory.clients() {
        let facts = ClientFacts::of(client);
        for row in rows.iter().filter(|r| r.applies.eval(&facts)) {
            let key = (
                client.inn.as_str().to_owned(),
                row.event.clone(),
                row.period.clone(),
            );
            assert!(expected.insert(key, (&row.due, &row.title)).is_none());
        }
    }
    let actual = calendar_jsonl(&app, &["--year", "2026"]);

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for line in &actual {
        let key = (
            line.client_inn.clone(),
            line.event.clone(),
            line.period.clone(),
        );
        if !seen.insert(key.clone()) {
            problems.push(format!("duplicate {key:?}"));
            continue;
        }
        match expected.get(&key) {
            None => problems.push(format!("extra {key:?} due {}", line.due)),
            Some((due, _)) if *due != line.due => {
                problems.push(format!("misdated {key:?}: {} instead of {due}", line.due))
            }
            Some((_, title)) if *title != line.title => problems.push(format!(
                "title of {key:?}: {:?} instead of {title:?}",
                line.title
            )),
            Some(_) => {}
        }
        assert_eq!(line.assignee.as_deref(), Some(ACCOUNTANT));
    }
    for key in expected.keys().filter(|k| !seen.contains(*k)) {
        problems.push(format!("missing {key:?}"));
    }
    let clients = directory.clients().count();
    println!(
        "checked {} obligations of {clients} clients against {} table rows: {} problem(s)",
        expected.len(),
        rows.len(),
        problems.len()
    );
    assert_eq!(clients, 896);
    // Every row of the table is exercised by at least one client.
    let covered: BTreeSet<&str> = expected.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(covered.len(), rows.len(), "rows no combination selects");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_tatarstan_gets_its_regional_day_off_and_bashkortostan_and_federal_do_not() {
    // 2027: Saturday 28.08 moves to Monday 30.08 federally, but 30.08 is Republic Day in Tatarstan (16) → 31.08.
    let app = TestApp::new(Engine::Sqlite).await;
    let csv = format!(
        "name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region\n\
         ООО «Казань»,{},160101001,osno,true,true,{ACCOUNTANT},,a@kazan.example,16\n\
         ООО «Уфа»,{},020101001,osno,true,true,{ACCOUNTANT},,a@ufa.example,02\n\
         ООО «Москва»,{},770101001,osno,true,true,{ACCOUNTANT},,a@msk.example,\n",
        inn("160000001"),
        inn("020000001"),
        inn("770000001"),
    );
    let path = app.path("regions.csv");
    std::fs::write(&path, csv).unwrap();
    import(&app, &path).await;
    let due = |inn: &str| {
        calendar_jsonl(&app, &["--year", "2027", "--client", inn])
            .into_iter()
            .find(|l| l.event == "contrib_2027_07")
            .map(|l| l.due)
            .unwrap()
    };
    assert_eq!(due(&inn("160000001")), "2027-08-31");
    assert_eq!(due(&inn("020000001")), "2027-08-30");
    assert_eq!(due(&inn("770000001")), "2027-08-30");
    // In 2026 no row moves for 16 or 02 (tests/domain/README.md §1.3): same dates as federal.
    let dates = |inn: &str| -> Vec<(String, String)> {
        calendar_jsonl(&app, &["--year", "2026", "--client", inn])
            .into_iter()
            .map(|l| (l.event, l.due))
            .collect()
    };
    assert_eq!(dates(&inn("160000001")), dates(&inn("770000001")));
    assert_eq!(dates(&inn("020000001")), dates(&inn("770000001")));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ics_feed_is_rfc_5545_with_one_stable_event_per_obligation() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let lines = calendar_jsonl(&app, &["--year", "2026"]);
    let run = || {
        let out = taxinbox(&app)
            .args(["calendar", "--year", "2026", "--format", "ics"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ics = run();
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert!(!ics.replace("\r\n", "").contains('\n'), "bare LF");
    for physical in ics.split("\r\n") {
        assert!(
            physical.len() <= 75,
            "{} octets: {physical}",
            physical.len()
        );
    }
    let unfolded = ics.replace("\r\n ", "");
    assert_eq!(unfolded.matches("BEGIN:VEVENT").count(), lines.len());
    assert_eq!(unfolded.matches("DTSTART;VALUE=DATE:").count(), lines.len());
    let uids = |s: &str| -> Vec<String> {
        s.replace("\r\n ", "")
            .lines()
            .filter(|l| l.starts_with("UID:"))
            .map(str::to_owned)
            .collect()
    };
    let first = uids(&ics);
    assert_eq!(
        first.iter().collect::<BTreeSet<_>>().len(),
        lines.len(),
        "UIDs unique"
    );
    assert_eq!(first, uids(&run()), "UIDs stable between exports");
    app.cleanup().await;
}

async fn generating_twice_creates_nothing_the_second_time(engine: Engine) {
    let app = TestApp::new(engine).await;
    app.import_corpus_register().await;
    let directory = directory(&app).await;
    let data = CalendarData::load(&project_root().join("rules")).unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
    let now = chrono::Utc::now();

    let first = generate(&app.app.store, &directory, &data, today, now)
        .await
        .unwrap();
    assert!(first.created > 0, "{first:?}");
    let tasks = app
        .count("SELECT COUNT(*) FROM tasks WHERE event IS NOT NULL")
        .await;
    let outbox = app.count("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(tasks, first.created as i64);
    assert!(outbox > 0);

    let second = generate(&app.app.store, &directory, &data, today, now)
        .await
        .unwrap();
    assert_eq!(second.created, 0);
    assert_eq!(second.existing, first.created);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE event IS NOT NULL")
            .await,
        tasks
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, outbox);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'calendar_generated'")
            .await,
        1
    );
    // The same through the command line: nothing new today either (its own clock; no task for today's window
    // can be a duplicate of the above, whose keys are unique per client + event + period).
    let out = taxinbox(&app)
        .args(["calendar", "generate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = taxinbox(&app)
        .args(["calendar", "generate"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(" 0 task(s) created"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let keys = app
        .count(
            "SELECT COUNT(*) FROM (SELECT client_inn, event, period FROM tasks WHERE event IS NOT NULL \
             GROUP BY client_inn, event, period HAVING COUNT(*) > 1) d",
        )
        .await;
    assert_eq!(keys, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generating_twice_creates_nothing_the_second_time_on_sqlite() {
    generating_twice_creates_nothing_the_second_time(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generating_twice_creates_nothing_the_second_time_on_postgres() {
    generating_twice_creates_nothing_the_second_time(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regime_change_keeps_created_tasks_and_changes_only_future_obligations() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let data = CalendarData::load(&project_root().join("rules")).unwrap();
    let before = directory(&app).await;
    let client = before
        .clients()
        .find(|c| c.regime.as_str() == "usn_income" && !c.is_individual())
        .unwrap()
        .clone();
    let inn = client.inn.as_str().to_owned();
    let march = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
    generate(&app.app.store, &before, &data, march, chrono::Utc::now())
        .await
        .unwrap();
    let usn_tasks =
        format!("SELECT COUNT(*) FROM tasks WHERE client_inn = '{inn}' AND event LIKE 'usn_%'");
    assert_eq!(app.count(&usn_tasks).await, 2, "УСН return and tax of 2025");

    // The client moves to ОСНО: the УСН tasks already created stay, the next ones follow ОСНО.
    let mut changed = client.clone();
    changed.regime = taxinbox::directory::Regime::Osno;
    let clients = before
        .clients()
        .map(|c| {
            if c.inn == client.inn {
                changed.clone()
            } else {
                c.clone()
            }
        })
        .collect();
    let after = Directory::new(
        clients,
        before.accountants().cloned().collect(),
        before.absences().to_vec(),
    );
    let april = NaiveDate::from_ymd_opt(2026, 4, 20).unwrap();
    generate(&app.app.store, &after, &data, april, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(app.count(&usn_tasks).await, 2);
    let profit = format!(
        "SELECT COUNT(*) FROM tasks WHERE client_inn = '{inn}' AND event = 'profit_declaration_q1'"
    );
    assert_eq!(app.count(&profit).await, 1);
    app.cleanup().await;
}

/// The three patents of the example: 12 months from 01.01.2026, 3 months from 01.03.2026, and
/// 10.02.2026–30.09.2026.
const PATENTS: &str = "inn,number,from,to,region\n\
    {inn},7701260000001,2026-01-01,2026-12-31,77\n\
    {inn},7701260000002,2026-03-01,2026-05-31,77\n\
    {inn},7701260000003,2026-02-10,2026-09-30,\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psn_client_gets_each_patents_payments_on_the_working_days_the_law_gives() {
    let app = TestApp::new(Engine::Sqlite).await;
    let ip = inn("7700000099");
    let clients = app.path("psn-clients.csv");
    std::fs::write(
        &clients,
        format!(
            "name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region\n\
             ИП Патентов Пётр Ильич,{ip},,psn,false,false,{ACCOUNTANT},,p@patent.example,\n"
        ),
    )
    .unwrap();
    let patents = app.path("patents.csv");
    std::fs::write(&patents, PATENTS.replace("{inn}", &ip)).unwrap();
    let out = taxinbox(&app)
        .args(["directory", "import"])
        .arg(&clients)
        .arg("--accountants")
        .arg(crate::helpers::corpus().join("accountants.csv"))
        .arg("--patents")
        .arg(&patents)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 patent(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let psn: Vec<(String, String, String)> =
        calendar_jsonl(&app, &["--year", "2026", "--client", &ip])
            .into_iter()
            .filter(|l| l.event.starts_with("psn_"))
            .map(|l| (l.due, l.event, l.period))
            .collect();
    for line in &psn {
        println!("{line:?}");
    }
    let row = |due: &str, event: &str, period: &str| {
        (due.to_owned(), event.to_owned(), period.to_owned())
    };
    assert_eq!(
        psn,
        vec![
            // 01.01 + 90 days = Wed 01.04.
            row("2026-04-01", "psn_payment_first", "7701260000001"),
            // 10.02 + 90 days = Mon 11.05, the day off moved from Saturday 09.05 → Tue 12.05.
            row("2026-05-12", "psn_payment_first", "7701260000003"),
            // Three months: the whole amount by its last day, Sun 31.05 → Mon 01.06.
            row("2026-06-01", "psn_payment_full", "7701260000002"),
            row("2026-09-30", "psn_payment_rest", "7701260000003"),
            // Ends on 31 December: paid by 28 December (Mon).
            row("2026-12-28", "psn_payment_rest", "7701260000001"),
        ]
    );

    // In the ICS feed and in `calendar generate` too, once each.
    let ics = taxinbox(&app)
        .args([
            "calendar", "--year", "2026", "--client", &ip, "--format", "ics",
        ])
        .output()
        .unwrap();
    let ics = String::from_utf8_lossy(&ics.stdout);
    assert_eq!(ics.matches("Налог по патенту").count(), 5, "{ics}");
    let directory = directory(&app).await;
    let data = CalendarData::load(&project_root().join("rules")).unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
    // On 20.03 only the first third of the yearly patent (due 01.04, 14 days' lead) is in its lead time.
    generate(&app.app.store, &directory, &data, day, chrono::Utc::now())
        .await
        .unwrap();
    let psn_tasks = "SELECT COUNT(*) FROM tasks WHERE event LIKE 'psn%'";
    assert_eq!(app.count(psn_tasks).await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE event = 'psn_payment_first' AND period = '7701260000001'")
            .await,
        1
    );
    let again = generate(&app.app.store, &directory, &data, day, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(again.created, 0);
    assert_eq!(app.count(psn_tasks).await, 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_patent_row_names_its_line_and_imports_nothing() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let ip = inn("7700000099");
    let org = inn("770000098");
    let patents = app.path("patents.csv");
    std::fs::write(
        &patents,
        format!("inn,number,from,to,region\n{ip},1,2026-01-01,2026-03-31,\n{ip},2,2026-06-01,2027-02-28,\n"),
    )
    .unwrap();
    let clients = crate::helpers::corpus().join("clients.csv");
    let import = |file: &Path| {
        taxinbox(&app)
            .args(["directory", "import"])
            .arg(&clients)
            .arg("--patents")
            .arg(file)
            .output()
            .unwrap()
    };
    let out = import(&patents);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("patents.csv:3") && err.contains("calendar year"),
        "{err}"
    );
    // A patent of an organisation, or of nobody in the directory: the directory would be inconsistent.
    std::fs::write(
        &patents,
        format!("inn,number,from,to,region\n{org},1,2026-01-01,2026-03-31,\n"),
    )
    .unwrap();
    let out = import(&patents);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no such client"), "{err}");
    assert_eq!(app.count("SELECT COUNT(*) FROM patents").await, 0);
    app.cleanup().await;
}

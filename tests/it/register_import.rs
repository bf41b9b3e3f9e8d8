//! `directory import` of a register as firms keep it: saved from Excel or exported from 1C (windows-1251, `;`
//! between cells) imports exactly as its UTF-8, comma-separated twin, for every file the import takes; and the
//! command closes its store, leaving no write-ahead log beside a SQLite database.

use crate::helpers::{corpus, Engine, TestApp};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A patents file for the corpus's patent-system client, with a quoted cell holding the other separator.
const PATENTS: &str = "inn,number,from,to,region\n\
    770334700943,7701260000001,2026-01-01,2026-12-31,77\n\
    770334700943,\"7701260000002\",2026-03-01,2026-05-31,\n";

/// The register files of one test, UTF-8 and comma-separated: the corpus's clients, accountants and absences,
/// and [`PATENTS`].
fn utf8_register(dir: &Path) -> Vec<PathBuf> {
    let patents = dir.join("patents.csv");
    std::fs::write(&patents, PATENTS).unwrap();
    vec![
        corpus().join("clients.csv"),
        corpus().join("accountants.csv"),
        corpus().join("absences.csv"),
        patents,
    ]
}

/// `file` as Excel on a Russian Windows saves it: cells separated by `;` (quoted where a cell holds one), the text
/// in windows-1251, CRLF line ends.
fn as_excel_saves_it(file: &Path, to: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for record in reader.records() {
        writer.write_record(&record.unwrap()).unwrap();
    }
    let semicolons = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&semicolons);
    assert!(
        !unmappable,
        "{} has a character windows-1251 lacks",
        file.display()
    );
    std::fs::write(to, &bytes).unwrap();
}

/// Everything the store holds of the register, in a comparable form.
async fn stored_register(app: &TestApp) -> String {
    let mut conn = app.app.store.acquire().await.unwrap();
    let directory = taxinbox::store::load_directory(&mut conn).await.unwrap();
    format!(
        "{:#?}\n{:#?}\n{:#?}\n{:#?}",
        directory.clients().collect::<Vec<_>>(),
        directory.accountants().collect::<Vec<_>>(),
        directory.absences(),
        directory.patents().collect::<Vec<_>>()
    )
}

fn files(f: &[PathBuf]) -> taxinbox::directory_import::RegisterFiles<'_> {
    taxinbox::directory_import::RegisterFiles {
        clients: &f[0],
        accountants: Some(&f[1]),
        absences: Some(&f[2]),
        patents: Some(&f[3]),
    }
}

fn taxinbox(app: &TestApp) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taxinbox"));
    c.arg("--config").arg(&app.config);
    c
}

fn import_args(c: &mut Command, files: &[PathBuf]) {
    c.args(["directory", "import"])
        .arg(&files[0])
        .arg("--accountants")
        .arg(&files[1])
        .arg("--absences")
        .arg(&files[2])
        .arg("--patents")
        .arg(&files[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_saved_as_windows_1251_with_semicolons_imports_as_its_utf8_twin() {
    let utf8 = TestApp::new(Engine::Sqlite).await;
    let detected = TestApp::new(Engine::Sqlite).await;
    let forced = TestApp::new(Engine::Sqlite).await;
    let originals = utf8_register(utf8.dir.path());
    let excel: Vec<PathBuf> = originals
        .iter()
        .map(|f| {
            let to = detected.path(&format!(
                "1251-{}",
                f.file_name().unwrap().to_string_lossy()
            ));
            as_excel_saves_it(f, &to);
            to
        })
        .collect();
    // The twin really is another file: not UTF-8, not comma-separated.
    let clients = std::fs::read(&excel[0]).unwrap();
    assert!(std::str::from_utf8(&clients).is_err());
    assert!(clients.starts_with(b"name;inn;kpp;"));

    let mode = taxinbox::directory_import::Mode::Register;
    let auto = taxinbox::directory::CsvFormat::default();
    let imported = taxinbox::directory_import::import_files_with(
        mode,
        auto,
        &utf8.app.store,
        files(&originals),
    )
    .await
    .unwrap();
    assert!(
        imported.clients > 0 && imported.accountants > 0,
        "{imported}"
    );
    assert!(imported.absences.is_some_and(|n| n > 0), "{imported}");
    assert_eq!(imported.patents, Some(2));
    let twin = taxinbox::directory_import::import_files_with(
        mode,
        auto,
        &detected.app.store,
        files(&excel),
    )
    .await
    .unwrap();
    assert_eq!(twin, imported);
    let expected = stored_register(&utf8).await;
    assert!(expected.contains("ООО «Ветер-Снаб»"), "{expected}");
    assert_eq!(stored_register(&detected).await, expected);

    // The command line, with the format given instead of detected.
    let mut c = taxinbox(&forced);
    import_args(&mut c, &excel);
    let out = c
        .args(["--encoding", "windows-1251", "--delimiter", ";"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        imported.to_string()
    );
    assert_eq!(stored_register(&forced).await, expected);

    for app in [utf8, detected, forced] {
        app.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_forced_to_the_wrong_format_is_refused_naming_file_and_line() {
    let app = TestApp::new(Engine::Sqlite).await;
    let excel = app.path("clients-1251.csv");
    as_excel_saves_it(&corpus().join("clients.csv"), &excel);
    let out = taxinbox(&app)
        .args(["directory", "import"])
        .arg(&excel)
        .args(["--encoding", "utf-8"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: not valid UTF-8", excel.display())),
        "{stderr}"
    );
    // Read with the wrong separator, the header is one unknown column.
    let out = taxinbox(&app)
        .args(["directory", "import"])
        .arg(&excel)
        .args(["--delimiter", ","])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1: header: unknown column", excel.display())),
        "{stderr}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients").await,
        0,
        "nothing imported"
    );
    app.cleanup().await;
}

/// The write-ahead log beside `db`: absent, or empty (checkpointed and truncated).
fn wal_size(db: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_sqlite_store_leaves_no_write_ahead_log_behind() {
    let app = TestApp::new(Engine::Sqlite).await;
    // The test's own connections end first: only the command's remain to be judged.
    app.app.store.close().await;
    let db = app.path("taxinbox.db");
    let files = utf8_register(app.dir.path());
    let mut c = taxinbox(&app);
    import_args(&mut c, &files);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(wal_size(&db), 0, "directory import left a write-ahead log");
    // A command that fails after opening the store closes it too.
    let out = taxinbox(&app)
        .args(["directory", "import"])
        .arg(app.path("missing.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = taxinbox(&app).args(["tasks"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(wal_size(&db), 0, "tasks left a write-ahead log");
    // The database file alone holds what was imported.
    let copy = app.path("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let store = taxinbox::store::Store::connect_read_only(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    let mut conn = store.acquire().await.unwrap();
    let directory = taxinbox::store::load_directory(&mut conn).await.unwrap();
    assert!(directory.clients().count() > 0);
    drop(conn);
    store.close().await;
    app.cleanup().await;
}

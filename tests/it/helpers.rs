//! Shared set-up for the integration tests: every test gets its own database (a temporary SQLite file, or a fresh
//! PostgreSQL database on the local server) and its own data folder; nothing is shared between tests.

use std::path::{Path, PathBuf};
use taxinbox::app::Instance;
use taxinbox::settings::Settings;
use taxinbox::store::Store;

/// The engines every behavioural test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn corpus() -> PathBuf {
    project_root().join("tests").join("corpus")
}

/// The local PostgreSQL server the tests use (trust auth on 127.0.0.1; override with TAXINBOX_TEST_PG).
pub fn postgres_server() -> String {
    std::env::var("TAXINBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A test's own world: a temporary folder, a configuration file pointing at the project's rules, a database.
pub struct TestApp {
    pub app: Instance,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pg_database: Option<String>,
}

static PG_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn fresh_postgres_database() -> String {
    use sqlx::Connection as _;
    let name = format!(
        "taxinbox_it_{}_{}_{}",
        std::process::id(),
        PG_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        chrono::Utc::now().timestamp_micros()
    );
    let admin = format!("{}/test", postgres_server());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by the tests: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    name
}

impl TestApp {
    pub async fn new(engine: Engine) -> TestApp {
        Self::with_extra_config(engine, "").await
    }

    /// `extra` is appended to the generated configuration file.
    pub async fn with_extra_config(engine: Engine, extra: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_database) = match engine {
            Engine::Sqlite => (
                format!("sqlite://{}", dir.path().join("taxinbox.db").display()),
                None,
            ),
            Engine::Postgres => {
                let name = fresh_postgres_database().await;
                (format!("{}/{name}", postgres_server()), Some(name))
            }
        };
        let config = dir.path().join("taxinbox.toml");
        let text = format!(
            "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\nfrom = \"taxinbox@debet-service.example\"\n{extra}\n",
            project_root().join("rules").display(),
            dir.path().join("outbox").display(),
        );
        std::fs::write(&config, text).expect("write config");
        let settings = Settings::from_sources(Some(&config), &[]).expect("test settings");
        let store = Store::connect(&settings.database.url)
            .await
            .expect("connect store");
        // As `Instance::open` does: the log keyed with this configuration's key file, so entries written here and
        // by the binary on the same configuration verify alike.
        taxinbox::app::use_log_key(&settings, &store)
            .await
            .expect("the log key");
        TestApp {
            app: Instance { settings, store },
            dir,
            config,
            pg_database,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Imports the corpus directory (clients, accountants, absences).
    pub async fn import_corpus_register(&self) {
        self.import_register_of(&corpus()).await;
    }

    /// Imports the register a labelled set carries (`clients.csv`, `accountants.csv`, `absences.csv`), or the
    /// corpus's when the set has none of its own.
    pub async fn import_register_of(&self, set: &Path) {
        let c = if set.join("clients.csv").is_file() {
            set.to_path_buf()
        } else {
            corpus()
        };
        taxinbox::directory_import::import_files(
            &self.app.store,
            &c.join("clients.csv"),
            Some(&c.join("accountants.csv")),
            Some(&c.join("absences.csv")),
            None,
        )
        .await
        .expect("import the corpus register");
    }

    pub async fn pipeline(&self) -> taxinbox::pipeline::Pipeline {
        self.app.pipeline().await.expect("pipeline")
    }

    /// Ingests paths through the library, as `taxinbox ingest` does, collecting the reports.
    pub async fn ingest(&self, paths: &[&Path], dry_run: bool) -> Vec<taxinbox::pipeline::Report> {
        self.ingest_with(&self.pipeline().await, paths, dry_run)
            .await
    }

    /// Ingests paths through `pipeline` (other rules than the configured ones), collecting the reports.
    pub async fn ingest_with(
        &self,
        pipeline: &taxinbox::pipeline::Pipeline,
        paths: &[&Path],
        dry_run: bool,
    ) -> Vec<taxinbox::pipeline::Report> {
        let options = taxinbox::ingest::IngestOptions {
            archive: taxinbox::pipeline::batch::Archive::No,
            dry_run,
            batch_size: self.app.settings.ingest.batch_size,
            max_batch_bytes: taxinbox::pipeline::budget::MemoryBudget::configured(
                &self.app.settings.ingest,
            )
            .batch_bytes(),
            mailbox: None,
        };
        self.ingest_with_options(pipeline, paths, &options).await.1
    }

    /// Ingests paths through `pipeline` with `options`: the run's summary and the reports.
    pub async fn ingest_with_options(
        &self,
        pipeline: &taxinbox::pipeline::Pipeline,
        paths: &[&Path],
        options: &taxinbox::ingest::IngestOptions,
    ) -> (
        taxinbox::pipeline::batch::Summary,
        Vec<taxinbox::pipeline::Report>,
    ) {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let inputs = taxinbox::source::collect(&paths).expect("collect inputs");
        let mut reports = Vec::new();
        let summary = taxinbox::ingest::ingest(
            &self.app.store,
            pipeline,
            &inputs,
            options,
            &chrono::Utc::now,
            |r| reports.push(r.clone()),
        )
        .await
        .expect("ingest");
        (summary, reports)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let mut conn = self.app.store.acquire().await.expect("conn");
        let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .expect(sql);
        row.0
    }

    /// Drops the PostgreSQL database of this test.
    pub async fn cleanup(self) {
        self.app.store.close().await;
        if let Some(name) = self.pg_database {
            use sqlx::Connection as _;
            if let Ok(mut conn) =
                sqlx::PgConnection::connect(&format!("{}/test", postgres_server())).await
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        }
    }
}

/// Copies a folder's files (not sub-folders) into `to`.
/// A rules folder of its own: the shipped data files (`demands.toml`, `notices.toml`, `topics.toml`, the production
/// calendars) and the given rule files in `mail/`.
pub fn rules_folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = project_root().join("rules");
    for file in ["demands.toml", "notices.toml", "topics.toml"] {
        std::fs::copy(shipped.join(file), dir.path().join(file)).unwrap();
    }
    copy_files(
        &shipped.join("calendar/production"),
        &dir.path().join("calendar/production"),
    );
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("mail").join(name), text).unwrap();
    }
    dir
}

pub fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// With `TAXINBOX_TEST_LOG` set (an `EnvFilter`, e.g. `taxinbox=debug`), the in-process service's log goes to the
/// test's output: what a failing test did, without a debugger. Unset, nothing is logged.
pub fn log_to_test_output() {
    if let Ok(filter) = std::env::var("TAXINBOX_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Runs one async test body on SQLite and on PostgreSQL, as two tests.
macro_rules! on_both_engines {
    ($(#[$attr:meta])* $name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])*
            async fn sqlite() {
                $crate::helpers::log_to_test_output();
                ($body)(Engine::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])*
            async fn postgres() {
                $crate::helpers::log_to_test_output();
                ($body)(Engine::Postgres).await;
            }
        }
    };
}
pub(crate) use on_both_engines;

/// Polls `check` until it holds; fails the test, naming `what`, after `limit`.
pub async fn wait_until<F, Fut>(limit: std::time::Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}

/// A `taxinbox run` of the real binary on `app`'s configuration, its output in `daemon-<round>.log` of the test's
/// folder.
pub fn spawn_daemon(app: &TestApp, round: usize) -> std::process::Child {
    use std::process::{Command, Stdio};
    let log = std::fs::File::create(app.path(&format!("daemon-{round}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&app.config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start taxinbox run")
}

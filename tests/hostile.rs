//! Hostile mail through the real ingest path: every file of `tests/hostile/` (small cases, committed byte for
//! byte, and the regressions the fuzzer found) and big or deep cases generated here at run time (a 25 MB
//! attachment, a 1 MB header line, 10 000 headers, MIME nested 100 deep, a chain of 200 attached messages, XML
//! 100 000 elements deep, 200 000 INN-like numbers, a 10 MB line, a message over the size cap) each go through
//! `taxinbox ingest --format jsonl` in a child process of their own. Each must end as `processed` or `quarantined`
//! with a reason, within a generous wall-clock guard (a hang detector, not a speed check) and under a peak
//! resident memory bound read from `/proc/<pid>/status`; afterwards `audit verify` must find the log intact.
//! And the sandbox probe: a rule handing each helper that takes an array or map a thousand entries of the same
//! megabyte string fails its one mail, stopped by the engine's limits and not by the clock, in bounded memory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A case still running after this long is taken to hang. Generous on purpose: debug builds on a busy CI
/// machine are slow, and this only has to tell "slow" from "never".
const HANG_GUARD: Duration = Duration::from_secs(180);

/// Peak resident memory allowed to one `taxinbox ingest` of one case. The biggest case is a 34 MB message
/// (a 25 MB attachment in base64); the raw bytes, the decoded copy and the parse tree stay a small multiple of
/// it, so a GiB means something is unbounded.
const MAX_PEAK_RSS_KIB: u64 = 1024 * 1024;

/// How often the child's memory is sampled. `VmHWM` is the kernel's own high-water mark, so sampling only
/// loses growth in the last interval before exit.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The two stores every behaviour must hold on.
#[derive(Debug, Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// The local PostgreSQL server the tests use (trust auth on 127.0.0.1; override with TAXINBOX_TEST_PG).
fn postgres_server() -> String {
    std::env::var("TAXINBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Runs one statement on the server's `test` database (creating or dropping a test database).
fn postgres_admin(sql: &str) {
    use sqlx::Connection as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin = format!("{}/test", postgres_server());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by the tests: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect(sql);
        conn.close().await.ok();
    });
}

/// A database, an outbox and a configuration of their own, with the shipped rules.
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    pg_database: Option<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_database {
            postgres_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

impl World {
    fn new(db: Db) -> World {
        World::with_rules(db, &project_root().join("rules"))
    }

    /// A world whose rules are read from `rules` (a folder laid out as the shipped `rules/`).
    fn with_rules(db: Db, rules: &Path) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_database) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("taxinbox.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = format!(
                    "taxinbox_hostile_{}_{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros())
                        .unwrap_or_default()
                );
                postgres_admin(&format!("CREATE DATABASE {name}"));
                (format!("{}/{name}", postgres_server()), Some(name))
            }
        };
        let config = dir.path().join("taxinbox.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n# The budget of a debug build on a shared machine: the shipped rules on a 10 MB line take most of the\n# release default (1 s) unoptimised; what is tested is that every mail ends within bounds, not the default.\ntime_budget_ms = 4000\n[notify]\ntransport = \"file\"\ndir = \"{}\"\nfrom = \"taxinbox@debet-service.example\"\n",
                rules.display(),
                dir.path().join("outbox").display(),
            ),
        )
        .expect("write config");
        World {
            dir,
            config,
            pg_database,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_taxinbox"));
        c.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            // As in production. A caught panic (see `ingest_case`) with backtraces on symbolises the debug binary,
            // some 330 MB, which would be measured here as the mail's cost.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null());
        c
    }
}

/// What one child run left behind.
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    peak_rss_kib: u64,
    took: Duration,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `command` to its end with output in files (a pipe could fill and stall it), sampling its memory; a
/// run past the hang guard is killed and fails the test.
fn run_bounded(mut command: Command, name: &str, scratch: &Path) -> Run {
    let out = scratch.join("stdout");
    let err = scratch.join("stderr");
    command
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let started = Instant::now();
    let mut child = command.spawn().expect("start taxinbox");
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for taxinbox") {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            child.kill().ok();
            child.wait().ok();
            panic!("{name}: still running after {HANG_GUARD:?}, killed (hang)");
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        peak_rss_kib: peak,
        took: started.elapsed(),
    }
}

/// One case's outcome, as the JSONL report says.
struct Outcome {
    status: String,
    error: Option<String>,
    report: serde_json::Value,
}

/// Ingests one file in its own child process and checks the promises every case shares.
fn ingest_case(world: &World, name: &str, path: &Path, summary: &mut Summary) -> Outcome {
    let scratch = tempfile::tempdir_in(world.dir.path()).expect("scratch dir");
    let mut c = world.command();
    c.args(["ingest", "--format", "jsonl"]).arg(path);
    let run = run_bounded(c, name, scratch.path());
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    // The one panic allowed is mail-parser's, caught by `mail::parse` (its debug assertions fire on some broken
    // MIME trees in debug builds, see tests/hostile/fuzz-*): the mail must then be quarantined for it.
    let caught = lines.len() == 1
        && lines[0].contains("quarantined")
        && lines[0].contains("the MIME structure could not be decoded");
    assert!(
        !run.stderr.contains("panicked") || caught,
        "{name}: taxinbox panicked:\n{}",
        run.stderr
    );
    assert!(
        run.status.success() && lines.len() == 1,
        "{name}: expected exit 0 and one report, got {} and {} lines\nstdout: {}\nstderr: {}",
        run.status,
        lines.len(),
        run.stdout,
        run.stderr
    );
    assert!(
        run.peak_rss_kib <= MAX_PEAK_RSS_KIB,
        "{name}: peak resident memory {} KiB is over the bound of {MAX_PEAK_RSS_KIB} KiB",
        run.peak_rss_kib
    );
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON report");
    let status = report["status"].as_str().unwrap_or_default().to_owned();
    let error = report["error"].as_str().map(str::to_owned);
    match status.as_str() {
        "processed" => {}
        "quarantined" => assert!(
            error.as_deref().is_some_and(|e| !e.trim().is_empty()),
            "{name}: quarantined without a reason: {report}"
        ),
        other => panic!("{name}: ended as {other:?}, not processed or quarantined: {report}"),
    }
    summary.add(name, &status, &error, &run);
    Outcome {
        status,
        error,
        report,
    }
}

#[derive(Default)]
struct Summary {
    cases: usize,
    processed: usize,
    quarantined: usize,
    lines: String,
    peak: (u64, String),
    slowest: (Duration, String),
}

impl Summary {
    fn add(&mut self, name: &str, status: &str, error: &Option<String>, run: &Run) {
        self.cases += 1;
        if status == "processed" {
            self.processed += 1;
        } else {
            self.quarantined += 1;
        }
        let mut reason = error.clone().unwrap_or_default();
        if reason.len() > 100 {
            let mut cut = 100;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        writeln!(
            self.lines,
            "  {name:<40} {status:<11} {:>6} KiB {:>8.2?} {reason}",
            run.peak_rss_kib, run.took
        )
        .ok();
        if run.peak_rss_kib > self.peak.0 {
            self.peak = (run.peak_rss_kib, name.to_owned());
        }
        if run.took > self.slowest.0 {
            self.slowest = (run.took, name.to_owned());
        }
    }

    fn print(&self, what: &str) {
        eprintln!("{}", self.lines);
        eprintln!(
            "hostile {what}: {} cases tried, {} processed, {} quarantined; peak RSS {} KiB ({}), slowest {:.2?} ({})",
            self.cases,
            self.processed,
            self.quarantined,
            self.peak.0,
            self.peak.1,
            self.slowest.0,
            self.slowest.1
        );
    }
}

/// After all cases: the hash chain and every stored raw mail check out.
fn assert_audit_intact(world: &World) {
    let scratch = tempfile::tempdir_in(world.dir.path()).expect("scratch dir");
    let mut c = world.command();
    c.args(["audit", "verify"]);
    let run = run_bounded(c, "audit verify", scratch.path());
    assert!(
        run.status.success(),
        "audit verify after the hostile cases failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

const HEAD: &str = "From: =?utf-8?B?0JjQpNCd0KEg4oSWIDE2?= <noreply@nalog.example>\r\n\
                    To: buh@debet-service.example\r\n\
                    Date: Mon, 2 Mar 2026 10:00:00 +0300\r\n\
                    MIME-Version: 1.0\r\n";

fn with_head(id: &str, subject: &str, rest: &str) -> Vec<u8> {
    format!("{HEAD}Message-ID: <{id}@hostile.test>\r\nSubject: {subject}\r\n{rest}").into_bytes()
}

/// A deterministic byte soup (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Valid INNs to scatter among the invalid ones: the check digits of a 10-digit INN.
fn inn10(base: u64) -> String {
    let digits: Vec<u32> = format!("{:09}", base % 1_000_000_000)
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    let weights = [2, 4, 10, 3, 5, 9, 4, 6, 8];
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    format!(
        "{}{}",
        digits.iter().map(|d| d.to_string()).collect::<String>(),
        sum % 11 % 10
    )
}

/// The big and deep cases, written into `dir` once per run, as (name, file).
fn generate(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    // A 25 MB attachment: base64 in 76-character lines, as mailers write it.
    let mut m = with_head(
        "att25",
        "25 MB attachment",
        "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Требование № 1 от 02.03.2026, ИНН 7728997898.\r\n--B\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    let target = m.len() + 25 * 1024 * 1024 * 4 / 3;
    while m.len() < target {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b"--B--\r\n");
    cases.push(("generated-25mb-attachment", m));

    // A header line of 1 MB (and a folded one of 1 MB in encoded words).
    let mut long = String::with_capacity(1 << 20);
    while long.len() < 1 << 20 {
        long.push_str("ИНН 7728997898 ");
    }
    let mut words = String::with_capacity(1 << 20);
    while words.len() < 1 << 20 {
        words.push_str(" =?utf-8?B?0KLRgNC10LHQvtCy0LDQvdC40LU=?=\r\n");
    }
    cases.push((
        "generated-1mb-header-line",
        with_head(
            "hdr1mb",
            &long,
            &format!("X-Words:{words}Content-Type: text/plain\r\n\r\nbody\r\n"),
        ),
    ));

    // 10 000 headers.
    let mut many = String::new();
    for i in 0..10_000 {
        writeln!(many, "X-Header-{i}: value {i}\r").ok();
    }
    many.push_str("\r\nbody\r\n");
    cases.push((
        "generated-10k-headers",
        with_head("hdr10k", "10 000 headers", &many),
    ));

    // multipart nested 100 deep, text at the bottom.
    let depth = 100;
    let mut nested = String::from("Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for i in 1..depth {
        write!(
            nested,
            "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
            i - 1
        )
        .ok();
    }
    write!(
        nested,
        "--b{}\r\nContent-Type: text/plain\r\n\r\nИНН 7728997898 at the bottom\r\n",
        depth - 1
    )
    .ok();
    for i in (0..depth).rev() {
        write!(nested, "--b{i}--\r\n").ok();
    }
    cases.push((
        "generated-mime-100-deep",
        with_head("mime100", "MIME 100 deep", &nested),
    ));

    // A chain of 200 attached messages, each inside the one before (a bounce loop, or a zip-bomb-like shape).
    let mut inner = "Subject: the innermost\r\n\r\nИНН 7728997898\r\n"
        .as_bytes()
        .to_vec();
    for i in 0..200 {
        let mut outer = format!(
            "Subject: level {i}\r\nContent-Type: multipart/mixed; boundary=\"r{i}\"\r\n\r\n--r{i}\r\nContent-Type: text/plain\r\n\r\nForward {i}\r\n--r{i}\r\nContent-Type: message/rfc822\r\n\r\n"
        )
        .into_bytes();
        outer.extend_from_slice(&inner);
        outer.extend_from_slice(format!("\r\n--r{i}--\r\n").as_bytes());
        inner = outer;
    }
    let mut chain = format!("{HEAD}Message-ID: <rfc822chain@hostile.test>\r\n").into_bytes();
    chain.extend_from_slice(&inner);
    cases.push(("generated-rfc822-chain-200", chain));

    // An XML attachment 100 000 elements deep, named like an FNS envelope.
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Файл><Документ>");
    for _ in 0..100_000 {
        xml.push_str("<a>");
    }
    for _ in 0..100_000 {
        xml.push_str("</a>");
    }
    xml.push_str("</Документ></Файл>");
    cases.push((
        "generated-xml-100k-deep",
        with_head(
            "xmldeep",
            "deep XML",
            &format!(
                "Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nXML\r\n--X\r\n\
                 Content-Type: application/xml; name=\"ON_DOCNPNO_deep.xml\"\r\n\r\n{xml}\r\n--X--\r\n"
            ),
        ),
    ));

    // 200 000 INN-like numbers, one in twenty with a valid check digit.
    let mut inns = String::with_capacity(3 << 20);
    for i in 0..200_000u64 {
        if i % 20 == 0 {
            inns.push_str(&inn10(i * 7919));
        } else {
            write!(inns, "{:010}", i * 104_729).ok();
        }
        inns.push_str(if i % 8 == 7 { "\r\n" } else { " " });
    }
    cases.push((
        "generated-200k-inn-like-numbers",
        with_head(
            "inns",
            "ИНН",
            &format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{inns}"),
        ),
    ));

    // A 10 MB body in one line.
    let mut one_line = with_head(
        "line10mb",
        "one line",
        "Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let phrase = "Требование № 12345 от 02.03.2026 ИНН 7728997898 ".as_bytes();
    while one_line.len() < 10 * 1024 * 1024 {
        one_line.extend_from_slice(phrase);
    }
    one_line.extend_from_slice(b"\r\n");
    cases.push(("generated-10mb-single-line", one_line));

    // Over the size cap: must be quarantined as too large, not read.
    let mut over = with_head(
        "overcap",
        "over the cap",
        "Content-Type: text/plain\r\n\r\n",
    );
    over.resize(65 * 1024 * 1024, b'a');
    cases.push(("generated-over-the-size-cap", over));

    // A megabyte of binary noise behind a header, and without one.
    let mut noisy = b"Subject: noise\r\nContent-Type: multipart/mixed; boundary=-\r\n\r\n".to_vec();
    noisy.extend(noise(1 << 20, 0x9e37_79b9_7f4a_7c15));
    cases.push(("generated-1mb-noise-after-header", noisy));
    cases.push(("generated-1mb-noise", noise(1 << 20, 42)));

    cases
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(format!("{name}.eml"));
            std::fs::write(&path, bytes).expect("write generated case");
            (name.to_owned(), path)
        })
        .collect()
}

/// Files (not folders) under `dir`, recursively, by name.
fn file_names_under(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            file_names_under(&path, out);
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_committed_hostile_mail_ends_processed_or_quarantined_with_a_reason_on_sqlite() {
    committed_cases(Db::Sqlite);
}

#[test]
fn every_committed_hostile_mail_ends_processed_or_quarantined_with_a_reason_on_postgres() {
    committed_cases(Db::Postgres);
}

fn committed_cases(db: Db) {
    let world = World::new(db);
    let dir = project_root().join("tests/hostile");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/hostile")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 15,
        "tests/hostile holds {} files",
        paths.len()
    );
    let pwned = Path::new("/tmp/pwned");
    let pwned_before = pwned.exists();

    let mut summary = Summary::default();
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = ingest_case(&world, &name, path, &mut summary);
        match name.as_str() {
            // Not a mail at all: quarantined with what was wrong.
            "binary-garbage.bin" => {
                assert_eq!(outcome.status, "quarantined", "{name}: {}", outcome.report);
            }
            // Entities are never expanded and external ones never fetched: no demand facts come out of them.
            "billion-laughs.eml" | "xml-external-entity.eml" => {
                let text = outcome.report.to_string();
                assert!(
                    !text.contains("lollol") && !text.contains("root:"),
                    "{name}: {text}"
                );
            }
            _ => {}
        }
    }
    summary.print(&format!("committed, {db:?}"));

    // Attachment names are data only: nothing named after one was written anywhere.
    let mut written = Vec::new();
    file_names_under(world.dir.path(), &mut written);
    assert!(
        !written
            .iter()
            .any(|n| n.contains("passwd") || n.contains("pwned")),
        "a file named after an attachment appeared: {written:?}"
    );
    assert_eq!(pwned.exists(), pwned_before, "/tmp/pwned appeared");
    assert_audit_intact(&world);
}

#[test]
fn huge_deep_and_flooding_mail_ends_processed_or_quarantined_within_bounded_time_and_memory_on_sqlite(
) {
    generated_cases(Db::Sqlite);
}

#[test]
fn huge_deep_and_flooding_mail_ends_processed_or_quarantined_within_bounded_time_and_memory_on_postgres(
) {
    generated_cases(Db::Postgres);
}

fn generated_cases(db: Db) {
    let world = World::new(db);
    let inputs = tempfile::tempdir().expect("temp dir");
    let cases = generate(inputs.path());
    let mut summary = Summary::default();
    for (name, path) in &cases {
        let outcome = ingest_case(&world, name, path, &mut summary);
        // Tried once; the raw bytes are in the database now.
        std::fs::remove_file(path).ok();
        // Big but legitimate in form: read, classified, never quarantined for the size of a string a rule sees.
        if !name.contains("noise") && !name.contains("over-the-size-cap") {
            assert_eq!(outcome.status, "processed", "{name}: {}", outcome.report);
        }
        if name == "generated-over-the-size-cap" {
            assert_eq!(outcome.status, "quarantined", "{}", outcome.report);
            assert!(
                outcome
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("limit")),
                "{}",
                outcome.report
            );
        }
    }
    summary.print(&format!("generated, {db:?}"));
    assert_audit_intact(&world);
}

/// Peak resident memory allowed to the `taxinbox ingest` that runs the sandbox probe (issue 18: the same probe took
/// 2.1 GB before the helpers and the memory ceiling measured map keys).
const PROBE_MAX_PEAK_RSS_KIB: u64 = 300 * 1024;

/// The shipped `rules/` (calendars, demand catalogue, vocabularies, templates) with `mail/` replaced by `files`.
fn rules_with(dst: &Path, files: &[(&str, &str)]) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create rules folder");
        for e in std::fs::read_dir(from).expect("read rules").flatten() {
            let name = e.file_name();
            if from == project_root().join("rules") && (name == "mail" || name == "tests") {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                copy(&path, &to.join(&name));
            } else {
                std::fs::copy(&path, to.join(&name)).expect("copy a rules file");
            }
        }
    }
    copy(&project_root().join("rules"), dst);
    std::fs::create_dir_all(dst.join("mail")).expect("rules/mail");
    for (name, text) in files {
        std::fs::write(dst.join("mail").join(name), text).expect("write a rule");
    }
}

/// Builds `bomb` — 1,000 entries, each holding the same 1 MB string (one character changed, so the keys differ) —
/// and hands it to a helper. Rhai counts the strings a map holds but not its keys, so the script builds it within
/// the engine's own checks.
const PROBE_MAP: &str = r#"
    let s = "x"; while s.len() < 1000000 { s += s; }
    let bomb = #{};
    for i in 0..1000 { let k = s; k[i] = 'y'; bomb[k] = ["x"]; }"#;
const PROBE_ARRAY: &str = r#"
    let s = "x"; while s.len() < 1000000 { s += s; }
    let bomb = [];
    for i in 0..1000 { let k = s; k[i] = 'y'; let e = #{}; e[k] = "x"; bomb.push(e); }"#;

#[test]
fn the_sandbox_probe_fails_its_one_mail_by_the_engines_limits_with_the_process_under_300_mb() {
    let cases = [
        (
            "earliest_phrase",
            PROBE_MAP,
            "earliest_phrase(mail.text, bomb)",
        ),
        ("request_topic", PROBE_MAP, "request_topic(bomb)"),
        ("topic_scores", PROBE_MAP, "topic_scores(bomb)"),
        (
            "count_phrases",
            PROBE_ARRAY,
            "count_phrases(mail.text, bomb)",
        ),
        ("contains_any", PROBE_ARRAY, "contains_any(mail.text, bomb)"),
    ];
    let mut summary = Summary::default();
    for (helper, build, call) in cases {
        let scratch = tempfile::tempdir().expect("temp dir");
        let rules = scratch.path().join("rules");
        let probe = format!(
            "fn classify(mail) {{\n    if !mail.subject.contains(\"PROBE\") {{ return (); }}\n{build}\n    {call};\n    #{{category: \"notice\", reason: \"the probe got through\"}}\n}}\n"
        );
        rules_with(
            &rules,
            &[
                ("10-probe.rhai", &probe),
                (
                    "20-notice.rhai",
                    r#"fn classify(mail) { #{category: "notice", reason: "a normal mail"} }"#,
                ),
            ],
        );
        let world = World::with_rules(Db::Sqlite, &rules);
        let inbox = scratch.path().join("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        for (file, subject) in [("1-probe.eml", "PROBE"), ("2-next.eml", "Ordinary mail")] {
            std::fs::write(
                inbox.join(file),
                with_head(&format!("{helper}-{file}"), subject, "\r\nText.\r\n"),
            )
            .expect("write a mail");
        }
        let run_dir = tempfile::tempdir_in(world.dir.path()).expect("scratch dir");
        let mut c = world.command();
        c.args(["ingest", "--format", "jsonl"]).arg(&inbox);
        let run = run_bounded(c, helper, run_dir.path());
        assert!(
            run.status.success(),
            "{helper}: {}\n{}",
            run.stdout,
            run.stderr
        );
        let reports: Vec<serde_json::Value> = run
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON report"))
            .collect();
        assert_eq!(reports.len(), 2, "{helper}: {}", run.stdout);
        let error = reports[0]["error"].as_str().unwrap_or_default();
        assert_eq!(
            reports[0]["status"], "quarantined",
            "{helper}: {}",
            reports[0]
        );
        // Stopped by the engine's limits — the memory ceiling or the helper's own check — not by the clock: the
        // mail failed within its time budget.
        assert!(
            error.contains("memory ceiling") || error.contains(helper),
            "{helper}: quarantined for {error:?}, not by the engine's limits"
        );
        assert!(!error.contains("time budget"), "{helper}: {error}");
        assert_eq!(
            (
                reports[1]["status"].as_str(),
                reports[1]["category"].as_str()
            ),
            (Some("processed"), Some("notice")),
            "{helper}: the next mail: {}",
            reports[1]
        );
        assert!(
            run.peak_rss_kib < PROBE_MAX_PEAK_RSS_KIB,
            "{helper}: peak resident memory {} KiB, over {PROBE_MAX_PEAK_RSS_KIB} KiB",
            run.peak_rss_kib
        );
        summary.add(helper, "quarantined", &Some(error.to_owned()), &run);
    }
    summary.print("sandbox probe");
}

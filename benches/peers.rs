//! taxinbox beside the filters people use instead of it, on the same mail and the same classification rules
//! (bench/peer_rules.py writes taxinbox's default rules as a Sieve script and an imapfilter configuration):
//!
//! - `sieve`: rule evaluation per message. taxinbox's `Pipeline::evaluate` (parse, extract, Rhai rules, client,
//!   deadlines; one thread) over N mails, then the same mails through the batch path `run` and `ingest` take
//!   (`pipeline::batch::evaluate`, across the cores; it must decide the same), beside Pigeonhole's `sieve-filter`
//!   (one process over the whole mailbox, through the private Dovecot's configuration, dry run: evaluates, files
//!   nothing) and `sieve-test` (one process per message, on a sample). A first, cold pass of each side is printed;
//!   then `TAXINBOX_BENCH_ROUNDS` rounds (default 5) run the three in turn, and the ratios are the medians of the
//!   rounds' ratios (this shared machine's speed moves between minutes; a round's sides share its minute).
//! - `imapfilter`: a mailbox worked end to end. taxinbox's `run --once` step (fetch, evaluate, commit with the log,
//!   move) beside `imapfilter` running the Lua configuration (server-side searches, one MOVE per folder) on an
//!   identical mailbox of a second private Dovecot.
//!
//! Run: `bench/sieve.sh`, `bench/imapfilter.sh` (they install the peers), or `cargo bench --bench peers [-- sieve |
//! -- imapfilter]`. `TAXINBOX_BENCH_MAILS` (default 2000), `TAXINBOX_BENCH_MAIL_KB` (default: corpus mail as is).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first failure

#[allow(dead_code)] // the test harness's Dovecot; the benchmark uses part of it
#[path = "../tests/it/dovecot.rs"]
mod dovecot;
#[allow(dead_code)] // shared bench support; this benchmark needs only the mail
#[path = "support/load_mail.rs"]
mod load_mail;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The peer rules generated from taxinbox's rules into `dir`.
fn peer_rules(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new("python3")
        .arg(root().join("bench/peer_rules.py"))
        .arg(dir)
        .output()
        .expect("run python3 bench/peer_rules.py");
    assert!(
        out.status.success(),
        "peer_rules.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("taxinbox.sieve"), dir.join("imapfilter.lua"))
}

/// A Dovecot holding load mails `1..=mails` in INBOX; returns it and the raw mails.
fn server_with(mails: usize, target: usize) -> (dovecot::Dovecot, Vec<Vec<u8>>) {
    let mut server = dovecot::Dovecot::start();
    let corpus = root().join("tests/corpus");
    let raws: Vec<Vec<u8>> = (1..=mails)
        .map(|n| load_mail::load_mail(&corpus, n, target))
        .collect();
    for raw in &raws {
        server.deliver(raw);
    }
    (server, raws)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An app on a fresh SQLite store in `dir` with the corpus directory, mailbox `demands` on `server`.
async fn app(dir: &Path, server: &dovecot::Dovecot) -> taxinbox::app::Instance {
    let password = server.password_file("imap-password", dovecot::PASSWORD);
    let config = dir.join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             from = \"taxinbox@debet-service.example\"\n{}",
            dir.join("taxinbox.db").display(),
            root().join("rules").display(),
            dir.join("outbox").display(),
            server.mailbox_config("demands", &password),
        ),
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    let store = taxinbox::store::Store::connect(&settings.database.url)
        .await
        .unwrap();
    let c = root().join("tests/corpus");
    taxinbox::directory_import::import_files(
        &store,
        &c.join("clients.csv"),
        Some(&c.join("accountants.csv")),
        Some(&c.join("absences.csv")),
        None,
    )
    .await
    .unwrap();
    taxinbox::app::Instance { settings, store }
}

fn sieve(mails: usize, target: usize) {
    let dir = tempfile::tempdir().unwrap();
    // Pigeonhole's tools drop to the mail user (as root: dovecot), who must read the script and the sample and
    // write the compiled script beside it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sieve_dir = dir.path().join("sieve");
    std::fs::create_dir_all(&sieve_dir).unwrap();
    std::fs::set_permissions(&sieve_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (script, _) = peer_rules(&sieve_dir);
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let test_conf = sieve_dir.join("sieve-test.conf");
    std::fs::write(
        &test_conf,
        format!(
            "{}first_valid_uid = 1\nfirst_valid_gid = 1\nmail_location = maildir:{}/unused\n",
            if root_user {
                "mail_uid = dovecot\nmail_gid = dovecot\n"
            } else {
                ""
            },
            sieve_dir.display()
        ),
    )
    .unwrap();
    let (server, raws) = server_with(mails, target);
    let rt = runtime();
    let app = rt.block_on(app(dir.path(), &server));
    let pipeline = rt.block_on(app.pipeline()).unwrap();
    let now = chrono::Utc::now();
    let category = |eval: &taxinbox::pipeline::Evaluation| match &eval.outcome {
        Ok(r) => r.decision.category.clone(),
        Err(_) => "quarantined".to_owned(),
    };

    // taxinbox on one thread: `Pipeline::evaluate` of each mail in turn.
    let one_thread = || {
        let started = Instant::now();
        let mut by_category: std::collections::BTreeMap<String, usize> = Default::default();
        for raw in &raws {
            *by_category
                .entry(category(&pipeline.evaluate(raw, "demands", now)))
                .or_default() += 1;
        }
        (started.elapsed(), by_category)
    };
    // The same mails through the batch path `run` and `ingest` take: batches of `ingest.batch_size`, each evaluated
    // across the cores and packed for the store (pipeline::batch::evaluate). Same decisions, more threads. The
    // batches are made before the clock starts (the mail a source fetched).
    use taxinbox::pipeline::batch;
    let batch_size = app.settings.ingest.batch_size;
    let threads = batch::evaluation_threads(batch_size.min(mails));
    let batch_path = || {
        let batches: Vec<Vec<batch::Incoming>> = raws
            .chunks(batch_size)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, raw)| batch::Incoming {
                        raw: raw.clone(),
                        source: format!("bench:{i}"),
                        mailbox: "demands".to_owned(),
                        archive: batch::Archive::No,
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let mut by_category: std::collections::BTreeMap<String, usize> = Default::default();
        for incoming in batches {
            let evaluated = batch::evaluate(&pipeline, incoming, batch::Shadow::Skip, now);
            for eval in evaluated.evaluations() {
                *by_category.entry(category(eval)).or_default() += 1;
            }
        }
        (started.elapsed(), by_category)
    };
    // sieve-filter reads the mailbox through the server's configuration, as the mail user would.
    let sieve_filter = || {
        let started = Instant::now();
        let out = Command::new("sieve-filter")
            .arg("-c")
            .arg(server.config_file())
            .args(["-u", dovecot::USER, "-v"])
            .arg(&script)
            .arg("INBOX")
            .output()
            .expect("run sieve-filter (bench/sieve.sh installs dovecot-sieve)");
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "sieve-filter: {text}");
        (elapsed, text)
    };

    // The first pass of each starts cold: taxinbox compiles the patterns its rules build at run time (the literal
    // ones were compiled when the rules loaded) and each thread fills its own caches (the regular expressions' lazy
    // automata, the zstd context); sieve-filter reads this mailbox for the first time. A service meets that once a
    // start; then come the rounds, each side in turn, so that a slow minute of this shared machine hits both sides
    // of a round, and the median round is the figure.
    let (cold_ours, ours_by_category) = one_thread();
    let (cold_batched, batched_by_category) = batch_path();
    assert_eq!(
        batched_by_category, ours_by_category,
        "the batch path decides as one thread does"
    );
    let (cold_filter, text) = sieve_filter();
    let filed = text.matches("store message in folder").count();
    let mut sieve_by_folder: std::collections::BTreeMap<String, usize> = Default::default();
    for line in text.lines() {
        if let Some(folder) = line.split("store message in folder: ").nth(1) {
            let top = folder
                .trim()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            *sieve_by_folder.entry(top).or_default() += 1;
        }
    }
    assert!(
        filed >= mails,
        "sieve-filter filed {filed} of {mails} mails:\n{}",
        text.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    let rounds: usize = std::env::var("TAXINBOX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut round_rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (ours, by_category) = one_thread();
        assert_eq!(
            by_category, ours_by_category,
            "every round decides the same"
        );
        let (batched, by_category) = batch_path();
        assert_eq!(
            by_category, ours_by_category,
            "every round decides the same"
        );
        let (filter, _) = sieve_filter();
        round_rates.push((rate(mails, ours), rate(mails, batched), rate(mails, filter)));
    }

    // sieve-test: one process per message, on a sample (process start-up dominates).
    let sample = mails.min(200);
    let files = sieve_dir.join("sample");
    std::fs::create_dir_all(&files).unwrap();
    for (i, raw) in raws.iter().take(sample).enumerate() {
        std::fs::write(files.join(format!("{i}.eml")), raw).unwrap();
    }
    let started = Instant::now();
    for i in 0..sample {
        let out = Command::new("sieve-test")
            .arg("-c")
            .arg(&test_conf)
            .arg(&script)
            .arg(files.join(format!("{i}.eml")))
            .output()
            .expect("run sieve-test");
        assert!(
            out.status.success(),
            "sieve-test: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let per_message = started.elapsed();

    let kb = raws.iter().map(Vec::len).sum::<usize>() as f64 / mails as f64 / 1024.0;
    let r_test = rate(sample, per_message);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let (r_ours, r_batched, r_filter) = (
        median(round_rates.iter().map(|r| r.0).collect()),
        median(round_rates.iter().map(|r| r.1).collect()),
        median(round_rates.iter().map(|r| r.2).collect()),
    );
    let ratio_ours = median(round_rates.iter().map(|r| r.0 / r.2).collect());
    let ratio_batched = median(round_rates.iter().map(|r| r.1 / r.2).collect());
    println!("sieve/{mails} mails, average {kb:.0} KB");
    println!(
        "  first pass (cold: patterns the rules build compiled, each thread's caches empty; sieve-filter's first \
         run over this mailbox): 1 thread {:.0}, batch path {:.0}, sieve-filter {:.0} mails/s; ratios {:.3} and {:.3}",
        rate(mails, cold_ours),
        rate(mails, cold_batched),
        rate(mails, cold_filter),
        rate(mails, cold_ours) / rate(mails, cold_filter),
        rate(mails, cold_batched) / rate(mails, cold_filter),
    );
    for (i, (ours, batched, filter)) in round_rates.iter().enumerate() {
        println!(
            "  round {}: 1 thread {ours:.0}, batch path {batched:.0}, sieve-filter {filter:.0} mails/s; ratios {:.3} and {:.3}",
            i + 1,
            ours / filter,
            batched / filter
        );
    }
    println!("  medians of {rounds} rounds:");
    println!("  taxinbox evaluate (parse, extract, Rhai, client, deadlines; 1 thread): {r_ours:>8.0} mails/s");
    println!(
        "  taxinbox batch path (batches of {batch_size}, {threads} threads, packed for the store): {r_batched:>8.0} mails/s"
    );
    println!("  sieve-filter (one process, whole mailbox, dry run):                   {r_filter:>8.0} mails/s");
    println!(
        "  sieve-test (one process per message, {sample} mails, once):             {:>8.2} s {r_test:>8.0} mails/s",
        per_message.as_secs_f64()
    );
    println!("  taxinbox categories:  {ours_by_category:?}");
    println!("  sieve-filter folders: {sieve_by_folder:?}");
    println!("  ratio taxinbox / sieve-filter: {ratio_ours:>8.3} (median of the rounds' ratios)");
    println!(
        "  ratio taxinbox batch path / sieve-filter: {ratio_batched:>8.3} ({threads} threads against one process; median of the rounds' ratios)"
    );
    println!("  ratio taxinbox / sieve-test:   {:>8.3}", r_ours / r_test);
    rt.block_on(app.store.close());
}

fn imapfilter(mails: usize, target: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (_, lua) = peer_rules(dir.path());
    // Two identical mailboxes: one for imapfilter, one for taxinbox.
    let (peer, _) = server_with(mails, target);
    let (ours_server, raws) = server_with(mails, target);

    let started = Instant::now();
    let out = Command::new("imapfilter")
        .arg("-c")
        .arg(&lua)
        .env("IF_HOST", "127.0.0.1")
        .env("IF_PORT", peer.port.to_string())
        .env("IF_USER", dovecot::USER)
        .env("IF_PASS", dovecot::PASSWORD)
        .env("HOME", dir.path())
        .output()
        .expect("run imapfilter (bench/imapfilter.sh installs it)");
    let filter = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "imapfilter: {text}");
    let moved: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("imapfilter moved "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("imapfilter's count: {text}"));
    assert_eq!(moved, mails, "imapfilter moved every mail");
    let mut by_folder: std::collections::BTreeMap<String, usize> = Default::default();
    for line in text.lines() {
        if let Some((folder, n)) = line
            .strip_prefix("imapfilter folder ")
            .and_then(|l| l.rsplit_once(' '))
        {
            let top = folder.split('/').next().unwrap_or_default().to_owned();
            *by_folder.entry(top).or_default() += n.trim().parse::<usize>().unwrap_or(0);
        }
    }

    let rt = runtime();
    let app = rt.block_on(app(dir.path(), &ours_server));
    let pipeline = rt.block_on(app.pipeline()).unwrap();
    let lease = taxinbox::imap::Lease::for_this_process();
    let started = Instant::now();
    let once = rt.block_on(taxinbox::daemon::poll_mailboxes_once(
        &app, &pipeline, &lease,
    ));
    let ours = started.elapsed();
    assert!(once.failed.is_empty(), "{:?}", once.failed);
    assert_eq!(once.summary.total(), mails);

    let kb = raws.iter().map(Vec::len).sum::<usize>() as f64 / mails as f64 / 1024.0;
    let (r_ours, r_filter) = (rate(mails, ours), rate(mails, filter));
    println!("imapfilter/{mails} mails, average {kb:.0} KB");
    println!(
        "  taxinbox run --once (fetch, evaluate, commit + log, move): {:>8.2} s {:>8.0} mails/s",
        ours.as_secs_f64(),
        r_ours
    );
    println!(
        "  imapfilter (server-side searches, one MOVE per folder):{:>8.2} s {:>8.0} mails/s",
        filter.as_secs_f64(),
        r_filter
    );
    println!("  imapfilter folders: {by_folder:?}");
    println!("  ratio taxinbox / imapfilter: {:>8.3}", r_ours / r_filter);
    rt.block_on(app.store.close());
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| name.contains(a.as_str()));
    if !(wants("peers") || wants("sieve") || wants("imapfilter")) {
        return;
    }
    let all = args.is_empty() || args.iter().any(|a| "peers".contains(a.as_str()));
    let mails: usize = std::env::var("TAXINBOX_BENCH_MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let target = load_mail::target_size(0);
    if all || args.iter().any(|a| "sieve".contains(a.as_str())) {
        sieve(mails, target);
    }
    if all || args.iter().any(|a| "imapfilter".contains(a.as_str())) {
        imapfilter(mails, target);
    }
}

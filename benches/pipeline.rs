//! Throughput of the mail path, each figure beside a peer measured in the same run:
//! - `evaluate`: parse + extract + classify per message over the labelled corpus, beside `mail-parser` alone
//!   (the parse step every Rust mail tool pays) — the ratio is what our extraction and rules cost on top;
//! - `ingest/sqlite` and `ingest/postgres`: the whole corpus committed (batched, logged, hash-chained), beside
//!   `evaluate` of the same mail — the ratio is what durability costs.
//!
//! - `pack_raw`: a 138 KB mail packed for the store (zstd level 1 with the thread's kept context), beside
//!   `zstd::bulk::compress` making a context per call (what it did before) — the ratio is what keeping it saves.
//!
//! Run: `cargo bench --bench pipeline` (PostgreSQL from TAXINBOX_TEST_PG, default postgres://postgres@127.0.0.1:5432).

#![allow(clippy::unwrap_used)] // a benchmark stops at the first failure

#[allow(dead_code)] // the test harness's Dovecot; the load mail uses its numbering
#[path = "../tests/it/dovecot.rs"]
mod dovecot;
#[allow(dead_code)] // shared bench support; this benchmark needs only the mail
#[path = "support/load_mail.rs"]
mod load_mail;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::path::PathBuf;
use taxinbox::pipeline::Pipeline;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_mail() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("tests/corpus/mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

async fn register(store: &taxinbox::store::Store) -> taxinbox::directory::Directory {
    let c = root().join("tests/corpus");
    taxinbox::directory_import::import_files(
        store,
        &c.join("clients.csv"),
        Some(&c.join("accountants.csv")),
        Some(&c.join("absences.csv")),
        None,
    )
    .await
    .unwrap();
    let mut conn = store.acquire().await.unwrap();
    taxinbox::store::load_directory(&mut conn).await.unwrap()
}

fn pipeline(directory: taxinbox::directory::Directory) -> Pipeline {
    Pipeline::load(
        &root().join("rules"),
        &Default::default(),
        directory,
        chrono_tz::Europe::Moscow,
    )
    .unwrap()
}

fn evaluate(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(taxinbox::store::Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("b.db").display()
        )))
        .unwrap();
    let p = pipeline(rt.block_on(register(&store)));
    let mail = corpus_mail();
    let now = chrono::Utc::now();
    let mut g = c.benchmark_group("per_message");
    g.throughput(Throughput::Elements(mail.len() as u64));
    g.bench_function("mail_parser_only", |b| {
        b.iter(|| {
            for m in &mail {
                std::hint::black_box(mail_parser::MessageParser::default().parse(m.as_slice()));
            }
        })
    });
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            for m in &mail {
                std::hint::black_box(p.evaluate(m, "bench", now));
            }
        })
    });
    g.finish();
}

fn pack_raw(c: &mut Criterion) {
    let mail = load_mail::load_mail(&root().join("tests/corpus"), 1, 135 * 1024);
    let mut g = c.benchmark_group("pack_raw");
    g.throughput(Throughput::Bytes(mail.len() as u64));
    g.bench_function("zstd_fresh_context", |b| {
        b.iter(|| std::hint::black_box(zstd::bulk::compress(&mail, 1).unwrap()))
    });
    g.bench_function("pack_raw", |b| {
        // The mail is handed over, as the batch path hands it; its copy is made outside the timing.
        b.iter_batched(
            || mail.clone(),
            |m| std::hint::black_box(taxinbox::store::pack_raw(String::new(), m)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Parsing one 135 KB mail (a text part and a base64 PDF): mail-parser as used, mail-parser told to leave transfer
/// encodings alone (the cost of finding the parts without decoding them), and `mail::parse`.
fn parse_large(c: &mut Criterion) {
    let mail = load_mail::load_mail(&root().join("tests/corpus"), 1, 135 * 1024);
    let mut g = c.benchmark_group("parse_large");
    g.throughput(Throughput::Bytes(mail.len() as u64));
    let parser = mail_parser::MessageParser::new();
    g.bench_function("mail_parser", |b| {
        b.iter(|| std::hint::black_box(parser.parse(mail.as_slice())))
    });
    let structure_only = mail_parser::MessageParser::new()
        .with_mime_headers()
        .ignore_header(mail_parser::HeaderName::ContentTransferEncoding);
    g.bench_function("mail_parser_no_transfer_decoding", |b| {
        b.iter(|| std::hint::black_box(structure_only.parse(mail.as_slice())))
    });
    g.bench_function("mail_parse", |b| {
        b.iter(|| std::hint::black_box(taxinbox::mail::parse(&mail)))
    });
    // As large, but a letter without files: a newsletter's HTML in base64.
    let html = {
        use base64::Engine as _;
        let page = "<p>Новости бухгалтерского учёта и налогообложения за неделю</p>\n".repeat(1200);
        let encoded = base64::engine::general_purpose::STANDARD.encode(page);
        let lines: Vec<&[u8]> = encoded.as_bytes().chunks(76).collect();
        let mut mail = b"From: news@example.com\r\nSubject: news\r\nMIME-Version: 1.0\r\n\
            Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        mail.extend_from_slice(&lines.join(&b"\r\n"[..]));
        mail
    };
    g.bench_function("mail_parse_letter_without_files", |b| {
        b.iter(|| std::hint::black_box(taxinbox::mail::parse(&html)))
    });
    g.bench_function("mail_parser_letter_without_files", |b| {
        b.iter(|| std::hint::black_box(parser.parse(html.as_slice())))
    });
    g.finish();
}

fn ingest_into(c: &mut Criterion, name: &str, url: impl Fn() -> String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let files: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(root().join("tests/corpus/mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let inputs: Vec<_> = files
        .iter()
        .map(|f| taxinbox::source::Input::File(f.clone()))
        .collect();
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                let store = rt
                    .block_on(taxinbox::store::Store::connect(&url()))
                    .unwrap();
                let p = pipeline(rt.block_on(register(&store)));
                (store, p)
            },
            |(store, p)| {
                let options = taxinbox::ingest::IngestOptions {
                    archive: taxinbox::pipeline::batch::Archive::No,
                    dry_run: false,
                    batch_size: 64,
                    max_batch_bytes: taxinbox::pipeline::budget::MAX_BATCH_BYTES,
                    mailbox: None,
                };
                rt.block_on(taxinbox::ingest::ingest(
                    &store,
                    &p,
                    &inputs,
                    &options,
                    &chrono::Utc::now,
                    |_| {},
                ))
                .unwrap();
                rt.block_on(store.close());
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    ingest_into(c, "sqlite", || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("sqlite://{}", dir.path().join(format!("i{i}.db")).display())
    });
    let server = std::env::var("TAXINBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let m = std::sync::atomic::AtomicU32::new(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    ingest_into(c, "postgres", || {
        use sqlx::Connection as _;
        let i = m.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("taxinbox_bench_{}_{i}", std::process::id());
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&format!("{server}/test"))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
        });
        format!("{server}/{name}")
    });
    // Leave no benchmark databases behind.
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/test"))
            .await
            .unwrap();
        for i in 0..m.load(std::sync::atomic::Ordering::SeqCst) {
            let name = format!("taxinbox_bench_{}_{i}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    });
}

criterion_group!(benches, evaluate, pack_raw, parse_large, ingest);
criterion_main!(benches);

//! Load mail for the benchmarks: corpus mail made unique ([`crate::dovecot::numbered_mail`]) and padded with a
//! PDF-like base64 attachment to a realistic size, so that IMAP transfer, parsing and storage see real-world bytes.
//! Included by `benches/load.rs`, `benches/imap.rs` and `benches/peers.rs` (`#[path]`), each of which declares the
//! test harness's `dovecot` module at its root.

use std::path::Path;

/// Base64 in 76-character lines (RFC 2045).
fn base64_lines(data: &[u8], eol: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    }
}

/// Load mail `n`, padded with an attachment to about `target` bytes (sizes vary ±50 % around it, like real
/// mail): the message becomes multipart/mixed with the original body as its first part.
pub fn load_mail(corpus: &Path, n: usize, target: usize) -> Vec<u8> {
    let mail = crate::dovecot::numbered_mail(corpus, n);
    if target == 0 {
        return mail;
    }
    // Deterministic per mail, incompressible like a real PDF.
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(n as u64);
    let factor = 0.5 + (rand::RngCore::next_u64(&mut rng) % 1000) as f64 / 1000.0;
    let want = (target as f64 * factor) as usize;
    if mail.len() >= want {
        return mail;
    }
    let crlf = mail.windows(2).any(|w| w == b"\r\n");
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let blank: Vec<u8> = [eol, eol].concat();
    let split = mail
        .windows(blank.len())
        .position(|w| w == blank.as_slice())
        .map_or(mail.len(), |p| p + eol.len());
    let (head, body) = mail.split_at(split);
    let body = body.get(eol.len()..).unwrap_or_default();
    // The original's content headers go to its part; the rest stays on the message.
    let mut top = Vec::new();
    let mut part = Vec::new();
    let mut in_content = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
            in_content = lower.starts_with("content-") || lower.starts_with("mime-version");
        }
        if in_content {
            if !String::from_utf8_lossy(line)
                .to_ascii_lowercase()
                .starts_with("mime-version")
            {
                part.extend_from_slice(line);
            }
        } else {
            top.extend_from_slice(line);
        }
    }
    if part.is_empty() {
        part.extend_from_slice(b"Content-Type: text/plain; charset=utf-8");
        part.extend_from_slice(eol);
    }
    let boundary = format!("=_taxinbox_load_{n}");
    let mut out = top;
    out.extend_from_slice(b"MIME-Version: 1.0");
    out.extend_from_slice(eol);
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"").as_bytes(),
    );
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("--{boundary}").as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(&part);
    out.extend_from_slice(eol);
    out.extend_from_slice(body);
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("--{boundary}").as_bytes());
    out.extend_from_slice(eol);
    for h in [
        "Content-Type: application/pdf; name=\"scan.pdf\"",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename=\"scan.pdf\"",
    ] {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(eol);
    let raw_len = (want - out.len()) * 3 / 4;
    let mut data = vec![0u8; raw_len];
    rand::RngCore::fill_bytes(&mut rng, &mut data);
    base64_lines(&data, eol, &mut out);
    out.extend_from_slice(format!("--{boundary}--").as_bytes());
    out.extend_from_slice(eol);
    out
}

/// The average mail size the benchmarks aim at, in bytes: `TAXINBOX_BENCH_MAIL_KB` KiB, else `default_kb`.
pub fn target_size(default_kb: usize) -> usize {
    std::env::var("TAXINBOX_BENCH_MAIL_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_kb)
        * 1024
}

/// The benchmark's database: a fresh PostgreSQL database `taxinbox_bench_<label>_<pid>` when
/// `TAXINBOX_BENCH_DB=postgres` (on `TAXINBOX_TEST_PG`, default the local test server), else SQLite in `dir`. Returns
/// the URL and, for PostgreSQL, the server and database name to drop afterwards.
pub async fn database_url(dir: &Path, label: &str) -> (String, Option<(String, String)>) {
    let postgres = std::env::var("TAXINBOX_BENCH_DB").as_deref() == Ok("postgres");
    database_url_on(dir, label, postgres).await
}

/// Like [`database_url`], with the engine chosen by the caller: PostgreSQL when `postgres`, else SQLite in `dir`.
pub async fn database_url_on(
    dir: &Path,
    label: &str,
    postgres: bool,
) -> (String, Option<(String, String)>) {
    if !postgres {
        return (
            format!("sqlite://{}", dir.join("taxinbox.db").display()),
            None,
        );
    }
    use sqlx::Connection as _;
    let server = std::env::var("TAXINBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("taxinbox_bench_{label}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/test"))
        .await
        .expect("connect to the PostgreSQL test server");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("create the benchmark database");
    }
    (format!("{server}/{name}"), Some((server, name)))
}

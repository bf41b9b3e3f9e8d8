//! Hostile-input test of `mail::parse` and `mail::extract`: every file of the parser torture corpus
//! (other parsers' regression mails, mbox files, non-mail files, empty files) plus synthetic garbage
//! and an oversized mail must come back as `Ok` or `Err`, never as a panic.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A deterministic byte soup (xorshift) with enough `\n`, `:`, `=` and `-` to wander into header,
/// encoded-word and boundary code paths.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            match seed % 16 {
                0 => b'\n',
                1 => b':',
                2 => b'=',
                3 => b'-',
                _ => (seed >> 8) as u8,
            }
        })
        .collect()
}

/// A plausible 20 MB mail: a demand letter with one huge base64 attachment and a long HTML part.
fn huge_mail() -> Vec<u8> {
    let mut m = String::from(concat!(
        "From: =?utf-8?B?0KTQndCh?= <noreply@nalog.example>\r\n",
        "To: buh@debet-service.example\r\n",
        "Subject: =?utf-8?B?0KLRgNC10LHQvtCy0LDQvdC40LU=?=\r\n",
        "Message-ID: <huge@test>\r\n",
        "Date: Mon, 2 Mar 2026 10:00:00 +0300\r\n",
        "Content-Type: multipart/mixed; boundary=\"HUGE\"\r\n\r\n",
        "--HUGE\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>",
    ));
    for _ in 0..100_000 {
        m.push_str("<p>ИНН 1650991230, КПП 165001001, требование № 1 от 02.03.2026</p>\r\n");
    }
    m.push_str("</body></html>\r\n--HUGE\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n");
    m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    while m.len() < 20 * 1024 * 1024 {
        m.push_str(line);
    }
    m.push_str("--HUGE--\r\n");
    m.into_bytes()
}

#[test]
fn no_input_from_the_torture_corpus_or_synthetic_garbage_makes_parse_or_extract_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail-torture/messages");
    let mut paths = Vec::new();
    files_under(&root, &mut paths);
    assert!(
        paths.len() > 700,
        "torture corpus missing: {} files",
        paths.len()
    );

    let mut inputs: Vec<(String, Vec<u8>)> = paths
        .iter()
        .filter_map(|p| {
            let name = p.strip_prefix(&root).unwrap_or(p).display().to_string();
            std::fs::read(p).ok().map(|bytes| (name, bytes))
        })
        .collect();
    inputs.push(("<empty>".into(), Vec::new()));
    inputs.push(("<3 bytes>".into(), vec![0xff, b':', 0x00]));
    inputs.push((
        "<64 KiB noise>".into(),
        noise(64 * 1024, 0x9e37_79b9_7f4a_7c15),
    ));
    let mut headed = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=-\r\n\r\n".to_vec();
    headed.extend(noise(64 * 1024, 42));
    inputs.push(("<header + noise>".into(), headed));
    inputs.push(("<20 MB mail>".into(), huge_mail()));

    // The panics we are looking for would be reported below by name; the default hook's backtraces
    // would only bury that list.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let (mut ok, mut err, mut with_text, mut with_inn) = (0usize, 0usize, 0usize, 0usize);
    let mut panicked = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for (name, bytes) in &inputs {
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            taxinbox::mail::parse(bytes).map(|mail| {
                let facts = taxinbox::mail::extract(&mail);
                (!mail.text.is_empty(), !facts.inns.is_empty())
            })
        }));
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        match outcome {
            Ok(Ok((text, inn))) => {
                ok += 1;
                with_text += usize::from(text);
                with_inn += usize::from(inn);
            }
            Ok(Err(_)) => err += 1,
            Err(_) => panicked.push(name.clone()),
        }
    }
    panic::set_hook(hook);

    println!(
        "torture: {} inputs, {ok} Ok ({with_text} with text, {with_inn} with an INN), {err} Err, {} panicked; slowest {:?} ({})",
        inputs.len(),
        panicked.len(),
        slowest.0,
        slowest.1
    );
    assert!(panicked.is_empty(), "panicked on: {panicked:#?}");
}

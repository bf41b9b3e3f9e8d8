//! Load mail for the benchmarks: corpus mail made unique ([`crate::dovecot::numbered_mail`]) and padded with a
//! PDF-like base64 attachment to a realistic size, so that IMAP transfer, parsing and storage see real-world bytes.
//! Included by `benches/load.rs`, `benches/imap.rs` and `benches/peers.rs` (`#[path]`), each of which declares the
//! test harness's `dovecot` module at its root.

use std::path::Path;

/// A small, fast, deterministic generator (xorshift) for attachment bytes: incompressible like a real PDF.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 in 76-character lines (RFC 2045), hand-rolled here only to keep the benchmark free of a dependency.
fn base64_lines(data: &[u8], eol: &[u8], out: &mut Vec<u8>) {
    let mut line = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            if chunk.len() > 1 {
                B64[(n >> 6) as usize & 63]
            } else {
                b'='
            },
            if chunk.len() > 2 {
                B64[n as usize & 63]
            } else {
                b'='
            },
        ];
        out.extend_from_slice(&chars);
        line += 4;
        if line >= 76 {
            out.extend_from_slice(eol);
            line = 0;
        }
    }
    out.extend_from_slice(eol);
}

/// Load mail `n`, padded with an attachment to about `target` bytes (sizes vary ±50 % around it, like real
/// mail): the message becomes multipart/mixed with the original body as its first part.
pub fn load_mail(corpus: &Path, n: usize, target: usize) -> Vec<u8> {
    let mail = crate::dovecot::numbered_mail(corpus, n);
    if target == 0 {
        return mail;
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (n as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut spread = [0u8; 8];
    rng.fill(&mut spread);
    let factor = 0.5 + (u64::from_le_bytes(spread) % 1000) as f64 / 1000.0;
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
    rng.fill(&mut data);
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

//! MIME header parameters (`name=value; filename*0*=…`) read from the raw header, and RFC 2231 file names
//! joined from their continuations before decoding, so a multi-byte character split between two of them
//! survives (mail-parser decodes each continuation on its own).

use super::parse::clean_line;
use mail_parser::{HeaderName, Message, MessagePart};

/// The file name from RFC 2231 parameters (`filename*=`, `filename*0*=`, …), read from the raw
/// header. mail-parser decodes each continuation on its own, which breaks a multi-byte character
/// split between two of them, as real clients do; here the bytes are joined before decoding.
pub(super) fn rfc2231_name(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let raw_header = |name: HeaderName<'static>| {
        part.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| {
                msg.raw_message
                    .get(h.offset_start as usize..h.offset_end as usize)
            })
            .map(String::from_utf8_lossy)
    };
    raw_header(HeaderName::ContentDisposition)
        .and_then(|v| rfc2231_param(&v, "filename"))
        .or_else(|| raw_header(HeaderName::ContentType).and_then(|v| rfc2231_param(&v, "name")))
}

/// Joins and decodes the RFC 2231 segments of parameter `param` in a raw header value.
fn rfc2231_param(value: &str, param: &str) -> Option<String> {
    if !value.contains('*') {
        return None;
    }
    let mut segments: Vec<(u32, bool, String)> = Vec::new();
    for (key, val) in header_params(value) {
        let Some(rest) = key
            .get(..param.len())
            .filter(|k| k.eq_ignore_ascii_case(param))
            .and_then(|_| key.get(param.len()..))
        else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('*') else {
            continue;
        };
        let (index, extended) = match rest {
            "" => (0, true),
            r => match r.strip_suffix('*') {
                Some(n) => (n.parse().ok()?, true),
                None => (r.parse().ok()?, false),
            },
        };
        segments.push((index, extended, val));
    }
    if segments.is_empty() || segments.len() > 1000 {
        return None;
    }
    segments.sort_by_key(|s| s.0);
    let mut charset = None;
    let mut bytes = Vec::new();
    for (i, (_, extended, val)) in segments.iter().enumerate() {
        if *extended {
            let mut v = val.as_str();
            if i == 0 {
                let mut it = v.splitn(3, '\'');
                if let (Some(cs), Some(_lang), Some(rest)) = (it.next(), it.next(), it.next()) {
                    charset = Some(cs.to_owned());
                    v = rest;
                }
            }
            percent_decode(v.as_bytes(), &mut bytes);
        } else {
            bytes.extend_from_slice(val.as_bytes());
        }
    }
    let encoding = charset
        .and_then(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(&bytes);
    Some(clean_line(&text)).filter(|s| !s.is_empty())
}

/// `key=value` pairs of a MIME header value after the first `;`, values unquoted.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the main value (`attachment`, `text/plain`).
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            match c {
                '=' => break,
                ';' => key.clear(),
                c if c.is_whitespace() => {}
                c => key.push(c),
            }
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '\r' | '\n' => {}
                    c => val.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                match c {
                    ';' => break,
                    c if c.is_whitespace() => {}
                    c => val.push(c),
                }
            }
        }
        if !key.is_empty() {
            out.push((key, val));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

fn percent_decode(s: &[u8], out: &mut Vec<u8>) {
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_are_joined_before_decoding_so_a_split_character_survives() {
        // "Т" is D0 A2 in UTF-8, split between two continuations as real clients do.
        let value = "attachment; filename*0*=utf-8''%D0; filename*1*=%A2%D1%80.pdf";
        assert_eq!(rfc2231_param(value, "filename").as_deref(), Some("Тр.pdf"));
    }

    #[test]
    fn quoted_plain_and_unnumbered_parameters_are_read() {
        assert_eq!(
            header_params("text/plain; charset=\"koi8-r\"; format=flowed"),
            [
                ("charset".to_owned(), "koi8-r".to_owned()),
                ("format".to_owned(), "flowed".to_owned())
            ]
        );
        let value = "attachment; filename*=windows-1251''%D2%F0%E5%E1.pdf";
        assert_eq!(
            rfc2231_param(value, "filename").as_deref(),
            Some("Треб.pdf")
        );
        assert_eq!(
            rfc2231_param("attachment; filename=\"a.pdf\"", "filename"),
            None
        );
    }
}

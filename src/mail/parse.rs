//! Decoding one raw message into a `ParsedMail`: headers decoded and unfolded, all readable body text
//! in one string (HTML rendered when it is the real content), forwarded messages folded in, and the
//! attachments listed with the text of XML and text files.
//!
//! MIME decoding itself is mail-parser's; this module decides which parts are the letter and which are
//! files, renders HTML for the rules (with `super::html`), reads RFC 2231 file names (with
//! `super::mime_params`), and bounds everything (see `super::limits`). Attachment names
//! are only ever data here: nothing touches the filesystem.

use super::html::html_to_text;
use super::limits::{
    MAX_ATTACHMENTS, MAX_ATTACHMENT_TEXT_BYTES, MAX_MESSAGE_BYTES, MAX_MIME_DEPTH,
    MAX_NESTED_MESSAGES, MAX_TEXT_BYTES,
};
use super::mime_params::rfc2231_name;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    Address, Encoding, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One message, decoded. See the field docs for what each holds when the header is missing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ParsedMail {
    /// As in the header, with angle brackets (`<abc@host>`).
    pub message_id: Option<String>,
    /// RFC 2047 decoded and unfolded; "" if absent.
    pub subject: String,
    /// The first From address, lower-cased; "" if none.
    pub from: String,
    /// The display name of the first From address, decoded; "" if none.
    pub from_name: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The Date header with its own offset.
    pub date: Option<DateTime<FixedOffset>>,
    /// All readable body text: plain parts in order, HTML rendered where it carries the content,
    /// forwarded messages after a blank line. `\n` line ends, no non-breaking spaces.
    pub text: String,
    /// Raw HTML of the first text/html body part; "" if none.
    pub html: String,
    /// Lower-case header name → decoded value; repeated headers joined with "\n".
    pub headers: BTreeMap<String, String>,
    pub attachments: Vec<Attachment>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Auto-submitted or bulk mail by its headers. A fact for the rules, not a verdict: operators send
    /// real demand notifications with `Precedence: bulk`.
    pub is_auto: bool,
    /// The messages attached as `message/rfc822` (a forward "as attachment"), outermost first.
    pub forwarded: Vec<ForwardedMessage>,
}

/// The headers of a message forwarded as an attachment: its Message-ID is that of the original, so a forward of
/// a mail already processed is recognised as the same mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForwardedMessage {
    pub message_id: Option<String>,
    pub from: String,
    pub subject: String,
    pub date: Option<DateTime<FixedOffset>>,
}

impl ParsedMail {
    /// An automatic answer to a mail (out-of-office, "ваше письмо получено"): by `Auto-Submitted: auto-replied`,
    /// `X-Autoreply`/`X-Autorespond`, or a subject as the common clients and servers write it. Its subject repeats
    /// the mail it answers.
    pub fn is_auto_reply(&self) -> bool {
        static SUBJECT: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"(?i)^\s*(?:автоматический ответ|автоответ|auto[- ]?reply|automatic reply|autoreply|out of office|abwesenheitsnotiz|отсутствую|нет на месте)\b")
                .expect("a valid pattern")
        });
        self.headers
            .get("auto-submitted")
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("auto-replied"))
            || self.headers.contains_key("x-autoreply")
            || self.headers.contains_key("x-autorespond")
            || SUBJECT.is_match(&self.subject)
    }

    /// A reply (`Re:`, `Ответ:`, … in the subject, or an `In-Reply-To` header) and not a forward (`Fwd:`,
    /// `Пересл:`): a demand it names is one it quotes, not one it brings. The rules see it as `mail.is_reply`.
    pub fn is_reply(&self) -> bool {
        static FORWARD: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"(?i)(?:^|[\s:])(?:fw|fwd|пересл|переслано)\s*:")
                .expect("a valid pattern")
        });
        static REPLY: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"(?i)^\s*(?:re|ответ|отв|aw|на)\s*(?:\[\d+\])?\s*:")
                .expect("a valid pattern")
        });
        !FORWARD.is_match(&self.subject)
            && (REPLY.is_match(&self.subject) || self.in_reply_to.is_some())
    }
}

/// One attached file (or a forwarded message, or an inline image).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    /// The decoded file name as sent; "" if none. Untrusted: never use it as a path.
    pub name: String,
    /// `type/subtype`, lower-case.
    pub mime: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// Decoded text of XML and `text/*` attachments; `None` for everything else.
    pub text: Option<String>,
}

/// Why a byte string could not be read as a message at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("not an e-mail message: {0}")]
    NotAMessage(String),
    #[error("the message is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Cap of one decoded header value (and of the values of a repeated header joined). A subject or name runs to a
/// few hundred bytes; a header of megabytes is an attack, and the cap keeps every header the rules see far below
/// their string limit.
const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;

/// Built once: the parser's header table is the same for every message.
static PARSER: LazyLock<MessageParser> = LazyLock::new(MessageParser::new);

/// Parses a raw RFC 5322 message. Anything that has a header block is `Ok` with whatever could be
/// read; see `ParseError` for the rest. Never panics.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge {
            size: raw.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    // Leading blank lines would otherwise read as an empty header block followed by a body.
    let Some(start) = header_start(raw) else {
        return Err(ParseError::NotAMessage(
            "it does not start with a header field (\"Name: value\")".into(),
        ));
    };
    let raw = &raw[start..];
    // mail-parser promises not to panic, but it carries debug assertions for states it considers
    // impossible, and hostile input is exactly where those are reached. One bad mail must not take
    // the worker down, so a panic anywhere in decoding becomes an ordinary error.
    // The structure pass is an optimisation: where it fails, the message is read as sent.
    let lean = std::panic::catch_unwind(|| Lean::of(raw)).ok().flatten();
    let no_sizes = BTreeMap::new();
    let (bytes, sizes) = lean
        .as_ref()
        .map_or((raw, &no_sizes), |lean| (lean.raw.as_slice(), &lean.sizes));
    let result = std::panic::catch_unwind(|| {
        let message = PARSER.parse(bytes)?;
        Some(build(&message, sizes))
    });
    match result {
        Ok(Some(mail)) => Ok(mail),
        Ok(None) => Err(ParseError::NotAMessage("no header block found".into())),
        Err(_) => Err(ParseError::NotAMessage(
            "the MIME structure could not be decoded".into(),
        )),
    }
}

/// Parsed without decoding transfer encodings: the parts are found at a fifth of the cost (the base64 of a file is
/// what a large mail is made of), to see which of them need not be decoded at all.
static STRUCTURE: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .ignore_header(mail_parser::HeaderName::ContentTransferEncoding)
});

/// A file's base64 shorter than this is decoded as mail-parser does: the detour would cost more than it saves.
const LEAN_MIN_BODY_BYTES: usize = 16 * 1024;

/// The media types of files whose bytes nothing reads. A message that names none (a letter, however large, with
/// no such file) is read as sent, without the structure pass.
static BINARY_TYPES: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["application/", "image/", "audio/", "video/"])
        .expect("literal patterns build")
});

/// The raw message without the base64 of its large binary files (PDF, images, archives: files whose bytes nothing
/// reads), with each file's decoded size by where its body, now empty, starts. The rest of the message is as sent,
/// so mail-parser reads it as before, and the files are still listed with their names, types and sizes; only their
/// bytes are never decoded.
///
/// A body is left out only where the outcome is known without decoding it: a part of the outer message, not text
/// or XML (whose text is read), declaring base64 on one header line, and holding nothing but base64 characters,
/// line breaks and trailing padding. Anything else is decoded as before.
struct Lean {
    raw: Vec<u8>,
    sizes: BTreeMap<u32, usize>,
}

impl Lean {
    fn of(raw: &[u8]) -> Option<Lean> {
        if raw.len() < LEAN_MIN_BODY_BYTES || !BINARY_TYPES.is_match(raw) {
            return None;
        }
        Lean::structured(raw, Shrunk::of(raw))
    }

    /// [`Lean::of`] with the structure read from `shrunk` (else from `raw` itself).
    fn structured(raw: &[u8], shrunk: Option<Shrunk>) -> Option<Lean> {
        let message = STRUCTURE.parse(shrunk.as_ref().map_or(raw, |s| s.bytes.as_slice()))?;
        let at = |offset: u32| {
            shrunk
                .as_ref()
                .map_or(offset as usize, |s| s.raw_offset(offset))
        };
        let mut cuts: Vec<(usize, usize, usize)> = message
            .parts
            .iter()
            .filter(|part| matches!(part.body, PartType::Binary(_) | PartType::InlineBinary(_)))
            .filter_map(|part| {
                let (start, end) = (at(part.offset_body), at(part.offset_end));
                if end > raw.len() || end < start + LEAN_MIN_BODY_BYTES {
                    return None;
                }
                let (name, mime) = name_and_mime(&message, part);
                if is_xml(&name, &mime) || mime.starts_with("text/") {
                    return None;
                }
                if !declares_base64(raw.get(at(part.offset_header)..start)?) {
                    return None;
                }
                let size = clean_base64_size(&raw[start..end])?;
                Some((start, end, size))
            })
            .collect();
        if cuts.is_empty() {
            return None;
        }
        cuts.sort_unstable();
        let mut lean = Lean {
            raw: Vec::with_capacity(raw.len() / 8),
            sizes: BTreeMap::new(),
        };
        let mut from = 0;
        for (start, end, size) in cuts {
            if start < from {
                // Parts of one message never overlap; if they seem to, read the message as sent.
                return None;
            }
            lean.raw.extend_from_slice(&raw[from..start]);
            lean.sizes.insert(u32::try_from(lean.raw.len()).ok()?, size);
            from = end;
        }
        lean.raw.extend_from_slice(&raw[from..]);
        Some(lean)
    }
}

/// The message for [`Lean`]'s structure pass, with the middle of every long run of base64 lines left out: the lines
/// between a run's first and last (at least [`SHRINK_MIN_LINES`] in all). mail-parser looks for the next boundary byte
/// by byte, through the whole of every file; here a run is found a line at a time. A line of nothing but the base64
/// alphabet and padding holds no "--" (so no boundary), no colon and no leading blank (so no header field or its
/// continuation), and is not the blank line that ends a header block: without those lines mail-parser finds the same
/// parts with the same headers, at offsets [`Shrunk::raw_offset`] takes back to the message as sent.
struct Shrunk {
    bytes: Vec<u8>,
    /// Where each stretch of `bytes` after a cut starts, in `bytes` and in the message as sent.
    anchors: Vec<(u32, usize)>,
}

/// The fewest lines of base64 in a run for [`Shrunk`] to cut it (about 5 KB at 76 characters a line).
const SHRINK_MIN_LINES: usize = 64;

impl Shrunk {
    /// `None` when no run is long enough to cut (the message is read as it is).
    fn of(raw: &[u8]) -> Option<Shrunk> {
        let mut shrunk: Option<Shrunk> = None;
        let mut from = 0;
        // The run being read: where its second and its last line start, and how many lines it has.
        let mut run: Option<(usize, usize, usize)> = None;
        let mut start = 0;
        // A file's base64 lines are of one length: the line after a base64 line is first tried at the length of
        // the one before (a slice of the alphabet holds no line break, so the break found there is the first).
        let mut width = 0;
        while start <= raw.len() {
            let guess = start + width;
            let (end, line, base64) = if width > 0
                && raw.get(guess) == Some(&b'\n')
                && is_base64_line(&raw[start..guess])
            {
                (guess, &raw[start..guess], true)
            } else {
                let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i);
                let line = &raw[start..end];
                (end, line, is_base64_line(line))
            };
            width = if base64 { line.len() } else { 0 };
            if base64 {
                run = Some(match run {
                    None => (end + 1, start, 1),
                    Some((second, _, lines)) => (second, start, lines + 1),
                });
            } else if let Some((second, last, lines)) = run.take() {
                if lines >= SHRINK_MIN_LINES {
                    let s = shrunk.get_or_insert_with(|| Shrunk {
                        bytes: Vec::with_capacity(raw.len() / 8),
                        anchors: Vec::new(),
                    });
                    s.bytes.extend_from_slice(&raw[from..second]);
                    s.anchors.push((u32::try_from(s.bytes.len()).ok()?, last));
                    from = last;
                }
            }
            start = end + 1;
        }
        let mut shrunk = shrunk?;
        shrunk.bytes.extend_from_slice(&raw[from..]);
        Some(shrunk)
    }

    /// Where `offset` of the shrunk message is in the message as sent.
    fn raw_offset(&self, offset: u32) -> usize {
        let i = self.anchors.partition_point(|&(at, _)| at <= offset);
        match i.checked_sub(1).map(|i| self.anchors[i]) {
            Some((at, raw)) => raw + (offset - at) as usize,
            None => offset as usize,
        }
    }
}

/// One of the 64 characters of base64 (RFC 4648), padding not included; branch-free, for the loops that vectorize.
#[inline(always)]
fn is_base64_alphabet(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26)
        | (b.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'+')
        | (b == b'/')
}

/// A line (without its `\n`; a trailing `\r` allowed) of nothing but the base64 alphabet and padding, not empty.
fn is_base64_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Without an early exit, so that the loop compiles to vector instructions.
    let mut bad = 0u8;
    for &b in line {
        bad |= u8::from(!(is_base64_alphabet(b) | (b == b'=')));
    }
    !line.is_empty() && bad == 0
}

/// Whether a part's raw header block has exactly one Content-Transfer-Encoding field, `base64` on its own line.
fn declares_base64(headers: &[u8]) -> bool {
    const NAME: &[u8] = b"content-transfer-encoding:";
    let mut found = None;
    for line in headers.split(|&b| b == b'\n') {
        if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            if found.is_some() {
                return false;
            }
            found = Some(
                line[NAME.len()..]
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"base64"),
            );
        }
    }
    found == Some(true)
}

/// The decoded size of base64 that holds only the alphabet, blanks and line breaks, then optional padding, as
/// mail-parser decodes it (four characters make three bytes; two or three left over make one or two); `None` for
/// anything else.
fn clean_base64_size(body: &[u8]) -> Option<usize> {
    let end = body
        .iter()
        .rposition(|&b| !matches!(b, b'=' | b'\r' | b'\n' | b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    let mut characters = 0;
    // Byte arithmetic without an early exit, so the loop compiles to vector instructions (a chunk's count fits in
    // a byte).
    for chunk in body[..end].chunks(usize::from(u8::MAX)) {
        let (mut count, mut bad) = (0u8, 0u8);
        for &b in chunk {
            let alphabet = is_base64_alphabet(b);
            let blank = (b == b'\r') | (b == b'\n') | (b == b' ') | (b == b'\t');
            count = count.wrapping_add(u8::from(alphabet));
            bad |= u8::from(!(alphabet | blank));
        }
        if bad != 0 {
            return None;
        }
        characters += usize::from(count);
    }
    Some(characters / 4 * 3 + [0, 0, 1, 2][characters % 4])
}

/// Where the header block starts, when the first non-blank line (after an optional BOM and mbox
/// `From ` line) is a header field: a name of printable ASCII, optional blanks (obsolete RFC 822
/// syntax), then a colon. `None` for binary files and plain text.
fn header_start(raw: &[u8]) -> Option<usize> {
    let bom = if raw.starts_with(b"\xef\xbb\xbf") {
        3
    } else {
        0
    };
    let blank = raw[bom..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    let start = bom + blank;
    let rest = &raw[start..];
    if is_header_line(rest) {
        return Some(start);
    }
    let nl = rest.iter().position(|&b| b == b'\n')?;
    (rest.starts_with(b"From ") && is_header_line(&rest[nl + 1..])).then_some(start)
}

fn is_header_line(line: &[u8]) -> bool {
    let name_len = line
        .iter()
        .take_while(|&&b| b.is_ascii_graphic() && b != b':')
        .count();
    let blanks = line[name_len..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    name_len > 0 && line.get(name_len + blanks) == Some(&b':')
}

/// `sizes`: the decoded size of each file of the outer message whose body [`Lean`] left out, by where it starts.
fn build(message: &Message<'_>, sizes: &BTreeMap<u32, usize>) -> ParsedMail {
    let mut mail = ParsedMail {
        message_id: message
            .message_id()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| format!("<{id}>")),
        headers: collect_headers(message),
        date: message.date().and_then(to_chrono),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        ..ParsedMail::default()
    };
    // Taken from the decoded headers rather than mail-parser's subject() so an unencoded 8-bit
    // subject gets the same charset fallback; the first Subject wins if there are several.
    mail.subject = mail
        .headers
        .get("subject")
        .and_then(|s| s.split('\n').next())
        .unwrap_or_default()
        .to_owned();
    if let Some(first) = message.from().and_then(Address::first) {
        mail.from = first.address().unwrap_or_default().trim().to_lowercase();
        mail.from_name = first.name().map(clean_line).unwrap_or_default();
        truncate_at_char_boundary(&mut mail.from_name, MAX_HEADER_VALUE_BYTES);
    }
    mail.to = addresses(message.all_to());
    mail.cc = addresses(message.all_cc());

    let mut walker = Walker::default();
    let mut current: Vec<&Message<'_>> = vec![message];
    for level in 0..=MAX_NESTED_MESSAGES {
        let mut next = Vec::new();
        for msg in current {
            let mut out = Out::default();
            let mut visited = vec![false; msg.parts.len()];
            // Only the outer message's offsets are those of the raw message `sizes` counts in.
            walker.sizes = (level == 0).then_some(sizes);
            walker.walk(msg, 0, 0, &mut visited, &mut out, &mut next);
            let body = out.text.trim_end();
            // Once the cap is reached the rest would be cut anyway; stop copying it.
            if body.is_empty() || walker.text.len() >= MAX_TEXT_BYTES {
                continue;
            }
            if level > 0 {
                // A forwarded message starts a new paragraph (the text so far ends with a line
                // break, one more makes the blank line) so rules anchored on line starts still
                // see its first line; its sender and subject come first, as a mail client shows
                // them (the subject of an operator's alert names the document).
                walker.text.push('\n');
                let fwd = forwarded_headers(msg);
                walker
                    .text
                    .push_str("-------- Пересылаемое сообщение --------\n");
                if !fwd.from.is_empty() {
                    walker.text.push_str(&format!("От: {}\n", fwd.from));
                }
                if !fwd.subject.is_empty() {
                    walker.text.push_str(&format!("Тема: {}\n", fwd.subject));
                }
                walker.text.push('\n');
                if mail.forwarded.len() < MAX_ATTACHMENTS {
                    mail.forwarded.push(fwd);
                }
            }
            walker.text.push_str(body);
            walker.text.push('\n');
        }
        if next.is_empty() {
            break;
        }
        current = next;
    }
    truncate_at_char_boundary(&mut walker.text, MAX_TEXT_BYTES);
    let text = walker.text.trim();
    mail.text = if text.len() == walker.text.len() {
        std::mem::take(&mut walker.text)
    } else {
        text.to_owned()
    };
    mail.html = walker.html.unwrap_or_default();
    mail.attachments = walker.attachments;
    mail.is_auto = is_auto(&mail, message);
    mail
}

/// The identity of a forwarded (attached) message.
fn forwarded_headers(msg: &Message<'_>) -> ForwardedMessage {
    let mut subject = msg.subject().map(clean_line).unwrap_or_default();
    truncate_at_char_boundary(&mut subject, MAX_HEADER_VALUE_BYTES);
    let mut from = msg
        .from()
        .and_then(Address::first)
        .map(|a| {
            let address = a.address().unwrap_or_default().trim().to_lowercase();
            match a.name().map(clean_line) {
                Some(name) if !name.is_empty() => format!("{name} <{address}>"),
                _ => address,
            }
        })
        .unwrap_or_default();
    truncate_at_char_boundary(&mut from, MAX_HEADER_VALUE_BYTES);
    ForwardedMessage {
        message_id: msg
            .message_id()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| format!("<{id}>")),
        from,
        subject,
        date: msg.date().and_then(to_chrono),
    }
}

/// Subjects and names are single lines for the rules; stray line breaks from folding bugs and
/// non-breaking spaces would only make patterns miss.
pub(super) fn clean_line(s: &str) -> String {
    let s = s.trim();
    if s.contains(['\r', '\n', '\u{a0}', '\t']) {
        s.chars()
            .map(|c| match c {
                '\r' | '\n' | '\u{a0}' | '\t' => ' ',
                c => c,
            })
            .collect()
    } else {
        s.to_owned()
    }
}

fn to_chrono(d: &mail_parser::DateTime) -> Option<DateTime<FixedOffset>> {
    let date = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))?;
    let naive = date.and_hms_opt(u32::from(d.hour), u32::from(d.minute), u32::from(d.second))?;
    let secs = i32::from(d.tz_hour) * 3600 + i32::from(d.tz_minute) * 60;
    let offset = FixedOffset::east_opt(if d.tz_before_gmt { -secs } else { secs })?;
    offset.from_local_datetime(&naive).single()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let wrap = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| format!("<{s}>"))
    };
    match value {
        HeaderValue::Text(t) => wrap(t).into_iter().collect(),
        HeaderValue::TextList(list) => list.iter().filter_map(|t| wrap(t)).collect(),
        _ => Vec::new(),
    }
}

fn addresses<'a>(headers: impl Iterator<Item = &'a Address<'a>>) -> Vec<String> {
    headers
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Every top-level header, decoded the same way (RFC 2047 words, unfolding) whatever its kind, so
/// rules can match `x-mailer`, `precedence` or `from` as text.
fn collect_headers(message: &Message<'_>) -> BTreeMap<String, String> {
    let raw = message.raw_message.as_ref();
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for h in message.headers() {
        let name = h.name.as_str().trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut value = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .map(decode_header_text)
            .unwrap_or_default();
        truncate_at_char_boundary(&mut value, MAX_HEADER_VALUE_BYTES);
        match map.get_mut(&name) {
            Some(existing) if existing.len() < MAX_HEADER_VALUE_BYTES => {
                existing.push('\n');
                existing.push_str(&value);
                truncate_at_char_boundary(existing, MAX_HEADER_VALUE_BYTES);
            }
            Some(_) => {}
            None => {
                map.insert(name, value);
            }
        }
    }
    map
}

/// Decodes a raw header value as unstructured text (encoded words, folding). Raw 8-bit bytes that
/// are not UTF-8 are read as windows-1251: Russian mailers that skip RFC 2047 use it by far the
/// most, and anything is better than replacement characters in a subject the rules must read.
fn decode_header_text(raw: &[u8]) -> String {
    let mut bytes: Cow<'_, [u8]> = match std::str::from_utf8(raw) {
        Ok(_) => Cow::Borrowed(raw),
        Err(_) => {
            let (text, _, _) = encoding_rs::WINDOWS_1251.decode(raw);
            Cow::Owned(text.into_owned().into_bytes())
        }
    };
    // The unstructured parser only finishes a value at a line end.
    if !bytes.ends_with(b"\n") {
        bytes.to_mut().push(b'\n');
    }
    match MessageStream::new(&bytes).parse_unstructured() {
        HeaderValue::Text(t) => clean_line(&t),
        _ => String::new(),
    }
}

fn is_auto(mail: &ParsedMail, message: &Message<'_>) -> bool {
    let h = |name: &str| {
        mail.headers
            .get(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let auto_submitted = h("auto-submitted").is_some_and(|v| v != "no");
    let autoreply =
        mail.headers.contains_key("x-autoreply") || mail.headers.contains_key("x-autorespond");
    let suppress = h("x-auto-response-suppress")
        .is_some_and(|v| v.split([',', ' ', ';']).any(|t| t == "all" || t == "oof"));
    let precedence = h("precedence")
        .is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "auto_reply" | "list"));
    let list =
        mail.headers.contains_key("list-unsubscribe") || mail.headers.contains_key("list-id");
    let dsn = message.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            let sub = ct.subtype().unwrap_or_default();
            (ct.ctype().eq_ignore_ascii_case("multipart") && sub.eq_ignore_ascii_case("report"))
                || (ct.ctype().eq_ignore_ascii_case("message")
                    && sub.eq_ignore_ascii_case("delivery-status"))
        })
    });
    let daemon = mail.from.starts_with("mailer-daemon@") || mail.from.starts_with("postmaster@");
    auto_submitted || autoreply || suppress || precedence || list || dsn || daemon
}

/// Text collected from one subtree; the flags tell an alternative which kind of content it holds.
#[derive(Default)]
struct Out {
    text: String,
    has_plain: bool,
    has_html: bool,
}

impl Out {
    fn push(&mut self, s: &str) {
        if self.text.len() >= MAX_TEXT_BYTES {
            return;
        }
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        push_normalized(&mut self.text, s);
        truncate_at_char_boundary(&mut self.text, MAX_TEXT_BYTES);
    }
}

/// Appends `s` with `\r\n`/`\r` turned into `\n` and U+00A0 into a space. Copies the clean runs in
/// bulk: this runs over every body byte.
fn push_normalized(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\r' => {
                out.push_str(&s[copied..i]);
                out.push('\n');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                copied = i;
            }
            // U+00A0 is C2 A0 in UTF-8; both bytes are one char, so the slices stay on boundaries.
            0xC2 if b.get(i + 1) == Some(&0xA0) => {
                out.push_str(&s[copied..i]);
                out.push(' ');
                i += 2;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&s[copied..]);
}

pub(super) fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[derive(Default)]
struct Walker<'s> {
    text: String,
    html: Option<String>,
    attachments: Vec<Attachment>,
    /// The decoded sizes of the files whose bodies were left out, in the message being walked.
    sizes: Option<&'s BTreeMap<u32, usize>>,
}

impl Walker<'_> {
    /// Visits part `id` of `msg` and its subtree in document order: body text goes to `out`,
    /// files to `self.attachments`, attached messages to `nested` for the next round.
    fn walk<'m>(
        &mut self,
        msg: &'m Message<'m>,
        id: usize,
        depth: usize,
        visited: &mut [bool],
        out: &mut Out,
        nested: &mut Vec<&'m Message<'m>>,
    ) {
        // Each part is visited once, so a malformed tree that lists a part twice cannot make the
        // walk exponential.
        match visited.get_mut(id) {
            Some(seen) if !*seen => *seen = true,
            _ => return,
        }
        let Some(part) = msg.parts.get(id) else {
            return;
        };
        match &part.body {
            PartType::Multipart(children) => {
                if depth >= MAX_MIME_DEPTH {
                    return;
                }
                let alternative = part
                    .content_type()
                    .and_then(|ct| ct.subtype())
                    .is_some_and(|s| s.eq_ignore_ascii_case("alternative"));
                if alternative {
                    let mut candidates = Vec::with_capacity(children.len());
                    for &child in children {
                        let mut o = Out::default();
                        self.walk(msg, child as usize, depth + 1, visited, &mut o, nested);
                        candidates.push(o);
                    }
                    if let Some(best) = choose_alternative(candidates) {
                        out.has_plain |= best.has_plain;
                        out.has_html |= best.has_html;
                        if !best.text.is_empty() {
                            out.push(&best.text);
                        }
                    }
                } else {
                    for &child in children {
                        self.walk(msg, child as usize, depth + 1, visited, out, nested);
                    }
                }
            }
            PartType::Text(text) if is_body(part, "plain") => {
                out.push(text);
                out.has_plain = true;
            }
            PartType::Html(html) if is_body(part, "html") => {
                out.push(&html_to_text(html, MAX_TEXT_BYTES));
                out.has_html = true;
                if self.html.is_none() {
                    let mut raw = html.to_string();
                    truncate_at_char_boundary(&mut raw, MAX_TEXT_BYTES);
                    self.html = Some(raw);
                }
            }
            PartType::Message(inner) => {
                self.add_attachment(msg, part);
                nested.push(inner);
            }
            _ => self.add_attachment(msg, part),
        }
    }

    fn add_attachment(&mut self, msg: &Message<'_>, part: &MessagePart<'_>) {
        if self.attachments.len() < MAX_ATTACHMENTS {
            let left_out = self
                .sizes
                .and_then(|sizes| sizes.get(&part.offset_body))
                .copied();
            self.attachments.push(attachment(msg, part, left_out));
        }
    }
}

/// Picks the alternative to read: the plain text, unless it is a stub ("open the HTML version") and
/// the HTML says more than twice as much.
fn choose_alternative(candidates: Vec<Out>) -> Option<Out> {
    let plain = candidates.iter().position(|o| o.has_plain && !o.has_html);
    let html = candidates.iter().position(|o| o.has_html);
    let pick = match (plain, html) {
        (Some(p), Some(h)) => {
            // Bytes, not chars: both sides are mostly Cyrillic, so the ratio is the same and
            // counting bytes is several times cheaper.
            let weight = |o: &Out| o.text.bytes().filter(|c| !c.is_ascii_whitespace()).count();
            if weight(&candidates[h]) > 2 * weight(&candidates[p]) {
                h
            } else {
                p
            }
        }
        (Some(p), None) => p,
        (None, Some(h)) => h,
        // RFC 2046: the last alternative is the richest the sender had.
        (None, None) => candidates.iter().rposition(|o| !o.text.is_empty())?,
    };
    candidates.into_iter().nth(pick)
}

/// A text part is the letter itself (not a file) when it has no file name, is not marked as an
/// attachment and is of the given `text/` subtype (or untyped, which RFC 2045 reads as text/plain).
fn is_body(part: &MessagePart<'_>, subtype: &str) -> bool {
    if part.attachment_name().is_some() {
        return false;
    }
    if part
        .content_disposition()
        .is_some_and(|d| d.is_attachment())
    {
        return false;
    }
    match part.content_type() {
        None => subtype == "plain",
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct
                    .subtype()
                    .unwrap_or("plain")
                    .eq_ignore_ascii_case(subtype)
        }
    }
}

/// One file: `left_out` is its decoded size when [`Lean`] left its body out.
fn attachment(msg: &Message<'_>, part: &MessagePart<'_>, left_out: Option<usize>) -> Attachment {
    let (name, mime) = name_and_mime(msg, part);
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_owned);
    let is_xml = is_xml(&name, &mime);
    let is_text = mime.starts_with("text/");

    let (size, text) = match &part.body {
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => match left_out {
            Some(size) if bytes.is_empty() => (size, None),
            _ => {
                let text = (is_xml || is_text).then(|| decode_text_file(bytes, charset.as_deref()));
                (bytes.len(), text)
            }
        },
        PartType::Text(t) | PartType::Html(t) => {
            // mail-parser already decoded the text with the part's charset, but an XML file's own
            // declaration wins over that, and the size should be the file's, so go back to the bytes.
            let bytes = raw_part_bytes(msg, part);
            let size = bytes.as_ref().map_or(t.len(), Vec::len);
            let text = match bytes {
                Some(b) if is_xml => decode_text_file(&b, charset.as_deref()),
                _ => {
                    let mut s = String::new();
                    push_normalized(&mut s, t);
                    truncate_at_char_boundary(&mut s, MAX_ATTACHMENT_TEXT_BYTES);
                    s
                }
            };
            (size, Some(text))
        }
        PartType::Message(m) => (m.raw_message.len(), None),
        PartType::Multipart(_) => (0, None),
    };
    Attachment {
        name,
        mime,
        size,
        text,
    }
}

/// A part's file name (decoded; "" if none) and `type/subtype` in lower case.
fn name_and_mime(msg: &Message<'_>, part: &MessagePart<'_>) -> (String, String) {
    let name = rfc2231_name(msg, part)
        .or_else(|| part.attachment_name().map(decode_name))
        .unwrap_or_default();
    let mime = match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.body {
            PartType::Text(_) => "text/plain".to_owned(),
            PartType::Html(_) => "text/html".to_owned(),
            PartType::Message(_) => "message/rfc822".to_owned(),
            _ => "application/octet-stream".to_owned(),
        },
    };
    (name, mime)
}

fn is_xml(name: &str, mime: &str) -> bool {
    let ext_xml = name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("xml"));
    // Office formats (…openxmlformats…) mention xml in the type but are zip files.
    let mime_xml = matches!(mime, "text/xml" | "application/xml") || mime.ends_with("+xml");
    ext_xml || mime_xml
}

/// Names arrive RFC 2231-encoded (decoded by mail-parser) or, against the standard but commonly, as
/// an RFC 2047 word inside the quotes; the latter is decoded here.
fn decode_name(name: &str) -> String {
    if name.contains("=?") {
        decode_header_text(name.as_bytes())
    } else {
        clean_line(name)
    }
}

/// The part's body bytes after transfer decoding, re-read from the raw message.
fn raw_part_bytes(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let raw = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)?;
    match part.encoding {
        Encoding::Base64 => base64_decode(raw),
        Encoding::QuotedPrintable => quoted_printable_decode(raw),
        Encoding::None => Some(raw.to_vec()),
    }
}

/// Decodes a text file: a BOM first, then an XML declaration's `encoding`, then the MIME charset,
/// then UTF-8. Capped at `MAX_ATTACHMENT_TEXT_BYTES`.
fn decode_text_file(bytes: &[u8], charset: Option<&str>) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_ATTACHMENT_TEXT_BYTES)];
    let encoding = encoding_rs::Encoding::for_bom(bytes)
        .map(|(e, _)| e)
        .or_else(|| xml_declared_encoding(bytes).and_then(encoding_rs::Encoding::for_label))
        .or_else(|| charset.and_then(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes())))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(bytes);
    let mut s = String::with_capacity(text.len());
    push_normalized(&mut s, &text);
    truncate_at_char_boundary(&mut s, MAX_ATTACHMENT_TEXT_BYTES);
    s
}

/// The label in `<?xml … encoding="…"?>` at the start of `bytes`, if any.
fn xml_declared_encoding(bytes: &[u8]) -> Option<&[u8]> {
    let head = &bytes[..bytes.len().min(256)];
    let start = head.iter().position(|&b| !b.is_ascii_whitespace())?;
    let head = &head[start..];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = &head[..end];
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let rest = &decl[at + 8..];
    let rest = &rest[rest.iter().position(|&b| b == b'"' || b == b'\'')?..];
    let quote = rest[0];
    let value = &rest[1..];
    let close = value.iter().position(|&b| b == quote)?;
    Some(&value[..close])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// What mail-parser alone makes of `raw`, every body decoded.
    fn parsed_whole(raw: &[u8]) -> String {
        let raw = &raw[header_start(raw).unwrap()..];
        format!("{:?}", build(&PARSER.parse(raw).unwrap(), &BTreeMap::new()))
    }

    fn base64_lines(bytes: &[u8]) -> String {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        lines.join("\r\n")
    }

    /// A letter with files: each its Content-Type, transfer encoding, name and encoded body.
    fn with_files(files: &[(&str, &str, &str, String)]) -> Vec<u8> {
        let mut mail = String::from(
            "From: Клиент <client@example.com>\r\nSubject: файлы\r\nMessage-ID: <f@test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Добрый день, ИНН 7707083893.\r\n",
        );
        for (ctype, encoding, name, body) in files {
            mail.push_str(&format!(
                "--b1\r\n{ctype}; name=\"{name}\"\r\nContent-Transfer-Encoding: {encoding}\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{body}\r\n"
            ));
        }
        mail.push_str("--b1--\r\n");
        mail.into_bytes()
    }

    #[test]
    fn large_binary_files_are_listed_without_decoding_them_as_if_decoded() {
        let pdf: Vec<u8> = (0..60_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (pdf_type, b64) = ("Content-Type: application/pdf", "base64");
        let xml =
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Файл ИННЮЛ=\"7707083893\"/>".repeat(400);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            // Padding of none, one and two characters.
            ("pdf", with_files(&[(pdf_type, b64, "a.pdf", base64_lines(&pdf))])),
            ("pdf-1", with_files(&[(pdf_type, b64, "a.pdf", base64_lines(&pdf[1..]))])),
            ("pdf-2", with_files(&[(pdf_type, b64, "a.pdf", base64_lines(&pdf[2..]))])),
            (
                "two files and an image",
                with_files(&[
                    (pdf_type, b64, "a.pdf", base64_lines(&pdf)),
                    ("Content-Type: image/jpeg", "BASE64", "b.jpg", base64_lines(&pdf[5..])),
                ]),
            ),
            (
                "XML is decoded and read",
                with_files(&[(
                    "Content-Type: application/octet-stream",
                    b64,
                    "ON_TREB.xml",
                    base64_lines(xml.as_bytes()),
                )]),
            ),
            (
                "a character outside base64",
                with_files(&[(pdf_type, b64, "a.pdf", format!("{}\r\n!!", base64_lines(&pdf)))]),
            ),
            (
                "padding inside",
                with_files(&[(pdf_type, b64, "a.pdf", format!("{}=\r\n{}", base64_lines(&pdf[1..]), base64_lines(&pdf)))]),
            ),
            (
                "quoted-printable",
                with_files(&[(
                    pdf_type,
                    "quoted-printable",
                    "a.pdf",
                    "=D0=90".repeat(10_000),
                )]),
            ),
            (
                "a message that is one file",
                format!(
                    "From: a@b.c\r\nSubject: скан\r\nContent-Type: application/pdf; name=\"s.pdf\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                    base64_lines(&pdf)
                )
                .into_bytes(),
            ),
            (
                "a forward with a file",
                format!(
                    "From: a@b.c\r\nSubject: Fwd: требование\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
                     --o\r\nContent-Type: text/plain\r\n\r\nсм. ниже\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--o--\r\n",
                    String::from_utf8(with_files(&[(pdf_type, b64, "a.pdf", base64_lines(&pdf))])).unwrap()
                )
                .into_bytes(),
            ),
        ];
        for (case, raw) in &cases {
            let parsed = parse(raw).unwrap();
            assert_eq!(format!("{parsed:?}"), parsed_whole(raw), "{case}");
        }
        // The files' bodies really were left out where they could be, and only there.
        let lean =
            |i: usize| Lean::of(&cases[i].1).map(|l| l.sizes.into_values().collect::<Vec<_>>());
        assert_eq!(lean(0), Some(vec![60_000]));
        assert_eq!(lean(1), Some(vec![59_999]));
        assert_eq!(lean(2), Some(vec![59_998]));
        assert_eq!(lean(3), Some(vec![60_000, 59_995]));
        for i in [4, 5, 6, 7] {
            assert_eq!(lean(i), None, "{}", cases[i].0);
        }
        assert_eq!(lean(8), Some(vec![60_000]));
        // A forwarded message's files are decoded: only the outer message's parts are left out.
        assert_eq!(lean(9), None);
        // The structure pass reads the files' runs of base64 cut short, and finds what it finds in them whole.
        for (case, raw) in &cases {
            let shrunk = Shrunk::of(raw);
            if let Some(s) = &shrunk {
                assert!(s.bytes.len() < raw.len() / 4, "{case}");
            }
            let whole = Lean::structured(raw, None).map(|l| (l.raw, l.sizes));
            assert_eq!(
                Lean::structured(raw, shrunk).map(|l| (l.raw, l.sizes)),
                whole,
                "{case}"
            );
        }
    }

    #[test]
    fn a_shrunk_message_keeps_each_run_of_base64_lines_first_and_last_and_maps_back() {
        let line =
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n";
        let run = |n: usize| line.repeat(n);
        let raw = format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n\r\n{}--b\r\n\
             Content-Type: text/plain\r\n\r\n{}--b\r\n\r\n{}=\r\n--b--\r\n",
            run(100),
            run(SHRINK_MIN_LINES - 1),
            run(SHRINK_MIN_LINES),
        );
        let raw = raw.as_bytes();
        let shrunk = Shrunk::of(raw).unwrap();
        // The first run keeps 2 lines of 100, the second is too short to cut, the third (with its padding line) 2.
        let cut = (100 - 2 + SHRINK_MIN_LINES + 1 - 2) * line.len();
        assert_eq!(shrunk.bytes.len(), raw.len() - cut);
        assert_eq!(shrunk.anchors.len(), 2);
        // Every byte kept is where the map says it came from.
        for (i, b) in shrunk.bytes.iter().enumerate() {
            assert_eq!(raw[shrunk.raw_offset(i as u32)], *b, "byte {i}");
        }
        assert!(Shrunk::of(run(SHRINK_MIN_LINES - 1).as_bytes()).is_none());
        assert!(!is_base64_line(b""));
        assert!(!is_base64_line(b"\r"));
        assert!(!is_base64_line(b" QUJD"));
        assert!(!is_base64_line(b"--b"));
        assert!(!is_base64_line(b"Subject:x"));
        assert!(is_base64_line(b"QUJD==\r"));
    }

    #[test]
    fn the_test_mail_is_read_alike_with_and_without_decoding_its_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        // Every labelled set's mail, the parser torture set and the hostile mail.
        let mut dirs = vec![root.join("mail-torture/messages"), root.join("hostile")];
        for set in std::fs::read_dir(&root).unwrap() {
            dirs.push(set.unwrap().path().join("mail"));
        }
        let mut read = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if !path.is_file() {
                    continue;
                }
                let raw = std::fs::read(&path).unwrap();
                // A mail mail-parser cannot read (or panics on) is refused either way.
                let whole = std::panic::catch_unwind(|| parsed_whole(&raw)).ok();
                let ours = parse(&raw).ok().map(|parsed| format!("{parsed:?}"));
                assert_eq!(ours, whole, "{}", path.display());
                // The structure read from the message with its runs of base64 cut short is the structure.
                let lean = |shrunk| {
                    std::panic::catch_unwind(|| {
                        Lean::structured(&raw, shrunk).map(|l| (l.raw, l.sizes))
                    })
                    .ok()
                };
                assert_eq!(lean(Shrunk::of(&raw)), lean(None), "{}", path.display());
                read += 1;
            }
        }
        assert!(read > 1000, "{read} mails read");
    }

    #[test]
    fn a_reply_is_told_from_a_forward_by_subject_and_in_reply_to() {
        let mail = |subject: &str, in_reply_to: Option<&str>| ParsedMail {
            subject: subject.to_owned(),
            in_reply_to: in_reply_to.map(str::to_owned),
            ..ParsedMail::default()
        };
        assert!(mail("Re: требование № 12", None).is_reply());
        assert!(mail("ОТВЕТ [2]: требование", None).is_reply());
        assert!(mail("вопрос", Some("<a@b>")).is_reply());
        assert!(!mail("Fwd: Re: требование", Some("<a@b>")).is_reply());
        assert!(!mail("Re: Пересл: требование", None).is_reply());
        assert!(!mail("Требование № 12", None).is_reply());
        assert!(!mail("Регистрация: ответ налоговой", None).is_reply());
    }

    fn corpus(n: &str) -> ParsedMail {
        let path = format!("{}/tests/corpus/mail/{n}.eml", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(&path).unwrap();
        parse(&raw).unwrap()
    }

    fn mail(raw: &str) -> ParsedMail {
        parse(raw.as_bytes()).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base64_and_quoted_printable_encoded_word_subjects_are_decoded_and_unfolded() {
        let m = mail(
            "From: a@b.example\r\nSubject: =?utf-8?B?0KLRgNC10LHQvtCy0LDQvdC40LU=?=\r\n =?utf-8?Q?_=E2=84=96_12?=\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n",
        );
        assert_eq!(m.subject, "Требование № 12");
        let m = mail("Subject: =?windows-1251?Q?=D2=F0=E5=E1=EE=E2=E0=ED=E8=E5?=\n\nx\n");
        assert_eq!(m.subject, "Требование");
        let m = mail("Subject: =?koi8-r?B?9NLFws/Xwc7JxQ==?=\n\nx\n");
        assert_eq!(m.subject, "Требование");
    }

    #[test]
    fn line_ends_become_newlines_and_non_breaking_spaces_become_spaces() {
        let mut out = String::new();
        push_normalized(&mut out, "a\r\nb\rc\u{a0}d\u{a0}\r\nжё\n");
        assert_eq!(out, "a\nb\nc d \nжё\n");
        let m = mail("Subject: t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nИНН\u{a0}1650991230\r\nконец\r\n");
        assert_eq!(m.text, "ИНН 1650991230\nконец");
    }

    #[test]
    fn an_unencoded_windows_1251_subject_is_still_readable() {
        let raw = b"Subject: \xd2\xf0\xe5\xe1\xee\xe2\xe0\xed\xe8\xe5 \xb9 5\r\n\r\nx\r\n";
        assert_eq!(parse(raw).unwrap().subject, "Требование № 5");
        let raw = "Subject: Требование № 5\r\n\r\nx\r\n";
        assert_eq!(parse(raw.as_bytes()).unwrap().subject, "Требование № 5");
    }

    #[test]
    fn the_envelope_headers_are_decoded_into_plain_fields() {
        let m = mail(concat!(
            "Message-ID: <abc@host.example>\n",
            "From: =?utf-8?B?0JrQvtC90YLRg9GA?= <Notify@Kontur.RU>\n",
            "To: One <one@firm.example>, two@firm.example\n",
            "Cc: Three <THREE@firm.example>\n",
            "Date: Thu, 12 Feb 2026 01:53:25 +0500\n",
            "In-Reply-To: <prev@host>\n",
            "References: <a@host> <prev@host>\n",
            "X-Custom: =?utf-8?Q?=D0=B4=D0=B0?=\n",
            "X-Custom: second\n",
            "\n",
            "Body\n",
        ));
        assert_eq!(m.message_id.as_deref(), Some("<abc@host.example>"));
        assert_eq!(m.from, "notify@kontur.ru");
        assert_eq!(m.from_name, "Контур");
        assert_eq!(m.to, ["one@firm.example", "two@firm.example"]);
        assert_eq!(m.cc, ["three@firm.example"]);
        assert_eq!(
            m.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-02-12T01:53:25+05:00")
        );
        assert_eq!(m.in_reply_to.as_deref(), Some("<prev@host>"));
        assert_eq!(m.references, ["<a@host>", "<prev@host>"]);
        assert_eq!(
            m.headers.get("x-custom").map(String::as_str),
            Some("да\nsecond")
        );
        assert_eq!(m.text, "Body");
        assert!(!m.is_auto);
    }

    #[test]
    fn a_missing_header_gives_an_empty_or_absent_field() {
        let m = mail("X-Nothing: here\n\nhello\n");
        assert_eq!(m.message_id, None);
        assert_eq!(m.subject, "");
        assert_eq!(m.from, "");
        assert_eq!(m.date, None);
        assert_eq!(m.text, "hello");
    }

    #[test]
    fn windows_1251_koi8r_and_utf8_bodies_are_decoded_from_base64_qp_and_8bit() {
        let cp1251: &[u8] = b"\xd2\xf0\xe5\xe1\xee\xe2\xe0\xed\xe8\xe5 \xb9 5"; // "Требование № 5"
        let raw = format!(
            "Subject: t\nContent-Type: text/plain; charset=windows-1251\nContent-Transfer-Encoding: base64\n\n{}\n",
            b64(cp1251)
        );
        assert_eq!(mail(&raw).text, "Требование № 5");

        let raw = "Subject: t\nContent-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: quoted-printable\n\n=F4=D2=C5=C2=CF=D7=C1=CE=C9=C5 =\n=CE=C1=CC=CF=C7=CF=D7=CF=C7=CF\n";
        assert_eq!(mail(raw).text, "Требование налогового");

        let mut raw = b"Subject: t\r\nContent-Type: text/plain; charset=windows-1251\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(cp1251);
        raw.extend_from_slice(b"\r\n\xe2\xf2\xee\xf0\xe0\xff\xa0\xf1\xf2\xf0\xee\xea\xe0\r\n");
        assert_eq!(parse(&raw).unwrap().text, "Требование № 5\nвторая строка");

        let raw = "Subject: t\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nИНН 7703703377\n";
        assert_eq!(mail(raw).text, "ИНН 7703703377");
    }

    #[test]
    fn corpus_bodies_in_koi8r_and_windows_1251_read_as_russian_text() {
        let m = corpus("0015");
        assert!(
            m.text.contains("Получатель ......... ООО \"Агросервис\""),
            "{}",
            m.text
        );
        let m = corpus("0007");
        assert!(
            m.text.contains("Дата направления: 15 января 2026 г."),
            "{}",
            m.text
        );
        assert!(!m.text.contains('\r'));
    }

    #[test]
    fn an_html_only_mail_becomes_readable_text() {
        let m = corpus("0014");
        assert!(m.text.contains("номер: N 2.4-11/5010;\n"), "{}", m.text);
        assert!(m
            .text
            .contains("налогоплательщик: ООО «Агросервис», ИНН 7715587012, КПП 771501001."));
        assert!(!m.text.contains("font-family"), "styles are dropped");
        assert!(!m.text.contains('<'));
        assert!(m.html.starts_with("<html>"));
    }

    #[test]
    fn a_stub_plain_alternative_gives_way_to_the_html() {
        let m = corpus("0037");
        assert!(
            m.text.contains("Номер и дата: № 82-60/39975 от 10.02.2026"),
            "{}",
            m.text
        );
        assert!(!m.text.contains("включите"));
    }

    #[test]
    fn a_full_plain_alternative_is_preferred_over_the_html() {
        let m = corpus("0039");
        assert!(
            m.text
                .starts_with("Здравствуйте!\n\nВ Контур.Экстерн поступил"),
            "{}",
            m.text
        );
        assert!(m.text.contains("ИНН/КПП: 7703703377/770301001"));
        assert!(!m.html.is_empty());
    }

    #[test]
    fn xml_attachments_are_decoded_by_their_declared_encoding() {
        for n in ["0001", "0007", "0021"] {
            let m = corpus(n);
            let xml = m
                .attachments
                .iter()
                .find(|a| a.name.ends_with(".xml"))
                .unwrap();
            let text = xml.text.as_deref().unwrap();
            assert!(text.contains("<Файл ИдФайл=\"ON_DOCNPNO_"), "{n}: {text}");
            assert!(text.contains("ИнфСообДок"));
            assert!(xml.size > 900 && xml.size < 1200, "{n}: {}", xml.size);
            let pdf = m.attachments.iter().find(|a| a.name.ends_with(".pdf"));
            assert!(pdf.is_none_or(|p| p.mime == "application/pdf" && p.text.is_none()));
        }
        // A declaration wins over the transport's silence about the charset.
        let xml: &[u8] = b"<?xml version=\"1.0\" encoding=\"windows-1251\"?><\xd4\xe0\xe9\xeb/>";
        let raw = format!(
            "Subject: x\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n--B\nContent-Type: application/octet-stream; name=a.xml\nContent-Transfer-Encoding: base64\n\n{}\n--B--\n",
            b64(xml)
        );
        let m = mail(&raw);
        assert_eq!(
            m.attachments[0].text.as_deref(),
            Some("<?xml version=\"1.0\" encoding=\"windows-1251\"?><Файл/>")
        );
        assert_eq!(m.attachments[0].size, xml.len());
    }

    #[test]
    fn rfc2231_and_encoded_word_file_names_are_decoded() {
        assert_eq!(
            corpus("0010").attachments[0].name,
            "Справка_ЕНС_7715587012_20260114.pdf"
        );
        assert_eq!(corpus("0030").attachments[0].name, "реестр документов.xlsx");
        let m = mail(concat!(
            "Subject: x\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n--B\n",
            "Content-Type: application/pdf\nContent-Disposition: attachment;\n filename*=windows-1251''%D2%F0%E5%E1.pdf\n\n%PDF\n--B--\n",
        ));
        assert_eq!(m.attachments[0].name, "Треб.pdf");
        assert_eq!(m.attachments[0].mime, "application/pdf");
    }

    #[test]
    fn office_files_are_not_taken_for_xml() {
        let m = corpus("0030");
        assert!(m.attachments[0].mime.contains("openxmlformats"));
        assert_eq!(m.attachments[0].text, None);
    }

    #[test]
    fn a_forwarded_message_adds_its_text_after_the_outer_text_and_its_attachments() {
        let m = corpus("0043");
        let outer = m.text.find("Пришла встречка").unwrap();
        let inner = m.text.find("В Контур.Экстерн поступил").unwrap();
        assert!(outer < inner);
        // The forwarded message starts a paragraph of its own, headed by its sender and subject as a mail client
        // shows them, and the original's Message-ID is kept (a second copy of a known mail joins its case).
        let header = m
            .text
            .find("-------- Пересылаемое сообщение --------\nОт: ")
            .unwrap();
        assert!(outer < header && header < inner, "{}", m.text);
        assert!(m.text[header..inner].contains("\nТема: "), "{}", m.text);
        assert!(m.text[..header].ends_with("\n\n"), "{}", m.text);
        assert_eq!(m.forwarded.len(), 1);
        assert!(m.forwarded[0].message_id.is_some());
        assert!(m.attachments.iter().any(|a| a.mime == "message/rfc822"));

        let inner_xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Файл/>";
        let raw = format!(
            concat!(
                "Subject: Fwd\nContent-Type: multipart/mixed; boundary=OUT\n\n--OUT\nContent-Type: text/plain; charset=utf-8\n\nСмотрите ниже\n",
                "--OUT\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/mixed; boundary=IN\n\n",
                "--IN\nContent-Type: text/plain; charset=utf-8\n\nТребование № 7\n--IN\nContent-Type: text/xml; name=\"d.xml\"\n\n{}\n--IN--\n",
                "--OUT--\n"
            ),
            inner_xml
        );
        let m = mail(&raw);
        assert_eq!(
            m.text,
            "Смотрите ниже\n\n-------- Пересылаемое сообщение --------\nТема: inner\n\nТребование № 7"
        );
        let names: Vec<_> = m
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.mime.as_str()))
            .collect();
        assert_eq!(names, [("", "message/rfc822"), ("d.xml", "text/xml")]);
        assert_eq!(m.attachments[1].text.as_deref(), Some(inner_xml));
    }

    #[test]
    fn auto_submitted_bulk_list_and_bounce_mail_is_marked_auto() {
        let auto = |headers: &str| mail(&format!("{headers}\nSubject: x\n\nbody\n")).is_auto;
        assert!(auto("Auto-Submitted: auto-replied"));
        assert!(!auto("Auto-Submitted: no"));
        assert!(auto("X-Autoreply: yes"));
        assert!(auto("X-Autorespond: yes"));
        assert!(auto("X-Auto-Response-Suppress: All"));
        assert!(auto("X-Auto-Response-Suppress: DR, OOF"));
        assert!(!auto("X-Auto-Response-Suppress: DR"));
        assert!(auto("Precedence: bulk"));
        assert!(auto("Precedence: junk"));
        assert!(auto("Precedence: list"));
        assert!(auto("Precedence: auto_reply"));
        assert!(!auto("Precedence: first-class"));
        assert!(auto("List-Unsubscribe: <mailto:u@x>"));
        assert!(auto("List-Id: <news.x>"));
        assert!(auto("From: MAILER-DAEMON@mx.example"));
        assert!(auto("From: postmaster@mx.example"));
        assert!(!auto("From: ivanova@firm.example"));
        assert!(mail("Subject: b\nContent-Type: multipart/report; report-type=delivery-status; boundary=R\n\n--R\nContent-Type: text/plain\n\nfailed\n--R\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n--R--\n").is_auto);
    }

    #[test]
    fn empty_headerless_and_oversized_input_is_refused() {
        assert!(matches!(parse(b""), Err(ParseError::Empty)));
        assert!(matches!(parse(b" \r\n\t"), Err(ParseError::Empty)));
        assert!(matches!(
            parse(b"%PDF-1.4\n%\xe2\xe3"),
            Err(ParseError::NotAMessage(_))
        ));
        assert!(matches!(
            parse(b"just some words\n"),
            Err(ParseError::NotAMessage(_))
        ));
        assert!(matches!(
            parse(b"\x00\x01\x02"),
            Err(ParseError::NotAMessage(_))
        ));
        let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert!(
            matches!(parse(&big), Err(ParseError::TooLarge { size, limit }) if size == big.len() && limit == MAX_MESSAGE_BYTES)
        );
    }

    #[test]
    fn an_mbox_from_line_a_bom_leading_blanks_or_obsolete_header_syntax_are_accepted() {
        for raw in [
            "From sender@x.example Mon Jan  1 00:00:00 2026\nSubject: hi\n\nbody\n",
            "\u{feff}From: a@b.example\nSubject: hi\n\nbody\n",
            "   \n\nSubject: hi\n\nbody\n",
            "Subject : hi\n\nbody\n",
        ] {
            assert_eq!(mail(raw).text, "body", "{raw:?}");
        }
    }

    #[test]
    fn the_text_cap_cuts_on_a_character_boundary() {
        let body = "ж".repeat(MAX_TEXT_BYTES); // two bytes each: twice the cap
        let m = mail(&format!(
            "Subject: big\nContent-Type: text/plain; charset=utf-8\n\nя{body}\n"
        ));
        assert!(m.text.len() <= MAX_TEXT_BYTES);
        assert!(m.text.len() > MAX_TEXT_BYTES - 4);
        let m = mail(&format!(
            "Subject: big\nContent-Type: text/html; charset=utf-8\n\n<p>я{body}</p>\n"
        ));
        assert!(m.text.len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn deeply_nested_multiparts_and_messages_are_bounded_and_do_not_crash() {
        let mut raw = String::from("Subject: deep\n");
        for i in 0..2000 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\n\ndeep text\n");
        let _ = parse(raw.as_bytes());

        let mut raw = String::new();
        for _ in 0..500 {
            raw.push_str("Subject: fwd\nContent-Type: message/rfc822\n\n");
        }
        raw.push_str("Subject: bottom\n\nbottom text\n");
        let _ = parse(raw.as_bytes());
    }
}

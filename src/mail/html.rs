//! HTML rendered as plain text for the rules: block elements and `<br>` become line breaks, table cells are
//! separated, whitespace collapses, entities are decoded, and scripts, styles and the head are dropped. A single
//! linear pass over the markup, no DOM: broken or hostile HTML cannot make it loop or grow.

use super::parse::truncate_at_char_boundary;

/// Renders HTML as readable text: block elements and `<br>` become line breaks, runs of whitespace
/// collapse, entities are decoded, scripts, styles and the title are dropped. Linear in the input;
/// stops after `limit` bytes of output.
pub(crate) fn html_to_text(html: &str, limit: usize) -> String {
    let b = html.as_bytes();
    let mut out = Sink::default();
    let mut i = 0;
    while i < b.len() && out.text.len() < limit {
        match b[i] {
            b'<' => i = tag(html, i, &mut out),
            b'&' => {
                let (decoded, next) = entity(html, i);
                match decoded {
                    // Includes U+00A0: a non-breaking space is a space for the rules.
                    Some(c) if c.is_whitespace() => out.space(),
                    Some('\u{ad}') => {}
                    Some(c) => out.word(c.encode_utf8(&mut [0; 4])),
                    None => out.word("&"),
                }
                i = next;
            }
            c if c.is_ascii_whitespace() => {
                out.space();
                i += 1;
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b'<' | b'&') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                // `i` stops only at ASCII bytes, so both ends are char boundaries.
                out.word(&html[start..i]);
            }
        }
    }
    let mut text = out.text;
    truncate_at_char_boundary(&mut text, limit);
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    text
}

#[derive(Default)]
struct Sink {
    text: String,
    pending_space: bool,
}

impl Sink {
    fn at_line_start(&self) -> bool {
        self.text.is_empty() || self.text.ends_with('\n')
    }
    fn space(&mut self) {
        self.pending_space = true;
    }
    fn word(&mut self, w: &str) {
        if self.pending_space && !self.at_line_start() {
            self.text.push(' ');
        }
        self.pending_space = false;
        self.text.push_str(w);
    }
    fn line_break(&mut self) {
        // At most one empty line in a row: layout tables nest blocks deeply.
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
        self.pending_space = false;
    }
    fn block(&mut self) {
        if !self.at_line_start() {
            self.text.push('\n');
        }
        self.pending_space = false;
    }
}

const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "dl",
    "dt",
    "dd",
    "form",
    "address",
    "center",
    "caption",
    "nav",
    "aside",
    "main",
    "body",
    "html",
];
const CELL_TAGS: &[&str] = &["td", "th"];
const SKIPPED_TAGS: &[&str] = &["script", "style", "title", "template", "head"];

/// Handles the markup starting at `b[i] == '<'`; returns the index after it.
fn tag(html: &str, i: usize, out: &mut Sink) -> usize {
    let b = html.as_bytes();
    if b[i..].starts_with(b"<!--") {
        return find(b, i + 4, b"-->").map_or(b.len(), |p| p + 3);
    }
    let closing = b.get(i + 1) == Some(&b'/');
    let name_start = if closing { i + 2 } else { i + 1 };
    match b.get(name_start) {
        Some(c) if c.is_ascii_alphabetic() => {}
        Some(b'!' | b'?') if !closing => {
            return find(b, name_start, b">").map_or(b.len(), |p| p + 1);
        }
        _ => {
            // A lone "<" in text ("a < b") is text.
            out.word("<");
            return i + 1;
        }
    }
    let name_end = name_start
        + b[name_start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
    let name = &html[name_start..name_end];
    let end = tag_end(b, name_end);
    let self_closing = end > 0 && b.get(end - 1) == Some(&b'/');
    let after = (end + 1).min(b.len());
    let is = |list: &[&str]| list.iter().any(|t| t.eq_ignore_ascii_case(name));

    if !closing && !self_closing && is(SKIPPED_TAGS) {
        // `head` without a closing tag is common in sloppy HTML; skipping to the end would lose the
        // whole letter, so only the elements whose content is never text skip unconditionally.
        return match find_closing(b, after, name) {
            Some(p) => tag_end(b, p).saturating_add(1).min(b.len()),
            None if name.eq_ignore_ascii_case("head") => after,
            None => b.len(),
        };
    }
    if name.eq_ignore_ascii_case("br") {
        out.line_break();
    } else if is(BLOCK_TAGS) {
        out.block();
    } else if is(CELL_TAGS) {
        out.space();
    }
    after
}

/// Index of the `>` closing the tag whose attributes start at `from`, skipping quoted values.
fn tag_end(b: &[u8], from: usize) -> usize {
    let mut quote: Option<u8> = None;
    let mut k = from;
    while k < b.len() {
        let c = b[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => return k,
            None => {}
        }
        k += 1;
    }
    // An unbalanced quote would swallow the rest of the document; fall back to the first `>`.
    find(b, from, b">").unwrap_or(b.len())
}

/// Position of `</name` (case-insensitive) at or after `from`.
fn find_closing(b: &[u8], from: usize, name: &str) -> Option<usize> {
    let mut k = from;
    while let Some(p) = find(b, k, b"</") {
        let start = p + 2;
        let candidate = b.get(start..start + name.len())?;
        if candidate.eq_ignore_ascii_case(name.as_bytes())
            && !b
                .get(start + name.len())
                .is_some_and(u8::is_ascii_alphanumeric)
        {
            return Some(start + name.len());
        }
        k = start;
    }
    None
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Decodes the character reference at `b[i] == '&'`; returns it and the index after it. `None` with
/// `i + 1` when it is not a reference we know (the `&` is then kept as text).
fn entity(html: &str, i: usize) -> (Option<char>, usize) {
    let b = html.as_bytes();
    let window = &b[i + 1..b.len().min(i + 34)];
    let Some(semi) = window.iter().position(|&c| c == b';') else {
        return (None, i + 1);
    };
    let body = &window[..semi];
    let c = if let Some(num) = body.strip_prefix(b"#") {
        let (digits, radix) = match num {
            [b'x' | b'X', hex @ ..] => (hex, 16),
            dec => (dec, 10),
        };
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, radix).ok())
            .map(|n| char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER))
    } else {
        named_entity(body)
    };
    match c {
        Some(c) => (Some(c), i + 1 + semi + 1),
        None => (None, i + 1),
    }
}

fn named_entity(name: &[u8]) -> Option<char> {
    Some(match name {
        b"nbsp" => '\u{a0}',
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        b"laquo" => '«',
        b"raquo" => '»',
        b"ldquo" => '“',
        b"rdquo" => '”',
        b"bdquo" => '„',
        b"lsquo" => '‘',
        b"rsquo" => '’',
        b"sbquo" => '‚',
        b"mdash" => '—',
        b"ndash" => '–',
        b"minus" => '−',
        b"hellip" => '…',
        b"numero" => '№',
        b"copy" => '©',
        b"reg" => '®',
        b"trade" => '™',
        b"bull" => '•',
        b"middot" => '·',
        b"deg" => '°',
        b"times" => '×',
        b"euro" => '€',
        b"sect" => '§',
        b"shy" => '\u{ad}',
        b"ensp" | b"emsp" | b"thinsp" => ' ',
        // Invisible joiners carry nothing for a reader; the soft hyphen is dropped by the caller.
        b"zwnj" | b"zwj" => '\u{ad}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_rendering_breaks_blocks_decodes_entities_and_drops_scripts() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
            <p>Первый&nbsp;абзац &laquo;в&nbsp;кавычках&raquo; &lt;тег&gt; &#8470;&#x31;</p>\
            <div>Строка<br>после br</div><script>alert('x<p>')</script>\
            <table><tr><td>ИНН</td><td>1650991230</td></tr></table>\
            <!-- comment <p> --> a &unknown; b &amp c</body></html>";
        let text = html_to_text(html, 10_000);
        assert_eq!(
            text,
            "Первый абзац «в кавычках» <тег> №1\nСтрока\nпосле br\nИНН 1650991230\na &unknown; b &amp c"
        );
    }

    #[test]
    fn html_rendering_survives_broken_markup() {
        for html in [
            "<",
            "<p",
            "<a href=\"x>text",
            "&#99999999999;",
            "<script>never closed",
            "<!--",
            "<head>text",
            "&",
        ] {
            let _ = html_to_text(html, 100);
        }
        assert_eq!(html_to_text("<head>text", 100), "text");
        assert_eq!(html_to_text("a < b", 100), "a < b");
        assert_eq!(html_to_text("x&#99999999;y", 100), "x\u{fffd}y");
    }
}

//! How a register file is written: its text encoding and its separator, as saved by a spreadsheet or exported from
//! 1C. Excel on a Russian Windows saves "CSV" as windows-1251 with `;` between cells; LibreOffice and most scripts
//! write UTF-8 with `,`. Both are detected, and either can be forced (`directory import --encoding/--delimiter`).
//!
//! Detection is deliberately simple and never guesses between two plausible readings: a file that is valid UTF-8
//! is UTF-8 (windows-1251 Cyrillic is almost never valid UTF-8, and plain ASCII reads the same either way); any
//! other file is windows-1251, where every byte is a character. The separator is whichever of `,` and `;` the
//! header line holds outside quotes — the column names contain neither.

use super::import::ImportError;

/// A register file's text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    /// windows-1251 (Cyrillic ANSI code page of Russian Windows; Excel's and 1C's "CSV").
    Windows1251,
}

impl std::str::FromStr for TextEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(TextEncoding::Utf8),
            "windows-1251" | "cp1251" => Ok(TextEncoding::Windows1251),
            other => Err(format!(
                "encoding {other:?}: expected utf-8 or windows-1251"
            )),
        }
    }
}

/// The separator between cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
}

impl Delimiter {
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
        }
    }
}

impl std::str::FromStr for Delimiter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "," => Ok(Delimiter::Comma),
            ";" => Ok(Delimiter::Semicolon),
            other => Err(format!("delimiter {other:?}: expected ',' or ';'")),
        }
    }
}

/// What to force when reading a register file; `None` means detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsvFormat {
    pub encoding: Option<TextEncoding>,
    pub delimiter: Option<Delimiter>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The file's text: UTF-8 (a byte-order mark dropped) when it is valid UTF-8 or `encoding` says so, windows-1251
/// otherwise. A file forced to UTF-8 that is not is an error naming its first bad line.
pub fn decode(
    file: &str,
    bytes: &[u8],
    encoding: Option<TextEncoding>,
) -> Result<String, ImportError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    match (encoding, std::str::from_utf8(bytes)) {
        (Some(TextEncoding::Windows1251), _) => Ok(windows_1251(bytes)),
        (_, Ok(text)) => Ok(text.to_owned()),
        (None, Err(_)) => Ok(windows_1251(bytes)),
        (Some(TextEncoding::Utf8), Err(e)) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(ImportError::Row {
                file: file.to_owned(),
                line,
                message: format!(
                    "not valid UTF-8 (byte {} of the file); a file saved by Excel or 1C is usually \
                     windows-1251: leave --encoding out, or give --encoding windows-1251",
                    e.valid_up_to() + 1
                ),
            })
        }
    }
}

fn windows_1251(bytes: &[u8]) -> String {
    // Every byte of windows-1251 maps to a character (WHATWG's table), so decoding cannot fail.
    let (text, _, _) = encoding_rs::WINDOWS_1251.decode(bytes);
    text.into_owned()
}

/// The separator the header line uses: `;` when it holds more semicolons than commas outside quotes, `,` otherwise
/// (a one-column file, or none at all, reads the same either way).
pub fn detect_delimiter(text: &str) -> Delimiter {
    let header = text.lines().next().unwrap_or("");
    let (mut commas, mut semicolons, mut quoted) = (0usize, 0usize, false);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas {
        Delimiter::Semicolon
    } else {
        Delimiter::Comma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_utf8_is_utf8_and_anything_else_windows_1251() {
        let utf8 = "name;inn\nООО «Ромашка»;7707083893\n";
        assert_eq!(decode("f", utf8.as_bytes(), None).expect("utf-8"), utf8);
        let mut bom = UTF8_BOM.to_vec();
        bom.extend_from_slice(utf8.as_bytes());
        assert_eq!(decode("f", &bom, None).expect("bom"), utf8);
        let (cp1251, _, unmappable) = encoding_rs::WINDOWS_1251.encode(utf8);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&cp1251).is_err());
        assert_eq!(decode("f", &cp1251, None).expect("cp1251"), utf8);
        // Forced: a windows-1251 file is not read as UTF-8, and the error names the line.
        let error = decode("clients.csv", &cp1251, Some(TextEncoding::Utf8))
            .expect_err("not utf-8")
            .to_string();
        assert!(
            error.starts_with("clients.csv:2: not valid UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn the_header_line_decides_the_separator() {
        assert_eq!(detect_delimiter("a,b,c\n1;2;3"), Delimiter::Comma);
        assert_eq!(detect_delimiter("a;b;c\n1,2,3"), Delimiter::Semicolon);
        assert_eq!(detect_delimiter("\"a;b\",c"), Delimiter::Comma);
        assert_eq!(detect_delimiter("name"), Delimiter::Comma);
        assert_eq!(detect_delimiter(""), Delimiter::Comma);
    }
}

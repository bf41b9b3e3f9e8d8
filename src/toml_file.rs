//! Where in a TOML file admins edit (`taxinbox.toml`, `demands.toml`, the calendars, the vocabulary files) a
//! problem is: the parser reports a byte offset, messages name a 1-based line. A leaf module with no `crate::`
//! imports, so every layer (settings, evidence, calendar) may use it.

/// 1-based line number of a byte offset (clamped to the text, so a span at the very end still has a line).
pub fn line_of(content: &str, offset: usize) -> usize {
    let end = offset.min(content.len());
    content.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of a TOML parse or shape error in `content`, when the parser reports a position.
pub fn error_line(content: &str, error: &toml::de::Error) -> Option<usize> {
    error.span().map(|span| line_of(content, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_counted_in_lines_from_one_and_clamped_to_the_text() {
        let content = "a = 1\nb = 2\n";
        assert_eq!(line_of(content, 0), 1);
        assert_eq!(line_of(content, 6), 2);
        assert_eq!(line_of(content, 1_000), 3);
    }

    #[test]
    fn a_toml_error_names_the_line_of_its_span() {
        let content = "a = 1\nb = \n";
        let error = toml::from_str::<toml::Table>(content).expect_err("not TOML");
        assert_eq!(error_line(content, &error), Some(2));
    }
}

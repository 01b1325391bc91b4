//! Quoting of identifiers and literals for any name Postgres accepts.
//!
//! Identifiers are always double-quoted (so case, reserved words, spaces,
//! quotes, `$$`, newlines and emoji all survive byte for byte). Literals are
//! single-quoted; when they contain a backslash they use the `E'...'` form
//! with backslashes doubled, so that the result means the same whatever
//! `standard_conforming_strings` is (this is what Postgres' own
//! `quote_literal()` does).

/// `name` as a double-quoted identifier: `"` doubled, nothing else changed.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `value` as a string literal: `'...'` with `'` doubled, or `E'...'` with
/// `'` and `\` doubled when it contains a backslash.
pub fn quote_literal(value: &str) -> String {
    let escape = value.contains('\\');
    let mut out = String::with_capacity(value.len() + 3);
    if escape {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || (escape && c == '\\') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_embedded_quotes_only() {
        assert_eq!(quote_ident("abc"), r#""abc""#);
        assert_eq!(quote_ident(r#"zenith "new""#), r#""zenith ""new""""#);
        assert_eq!(quote_ident("a\\b$$c\n"), "\"a\\b$$c\n\"");
        assert_eq!(quote_ident("select"), r#""select""#);
    }

    #[test]
    fn literals_double_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("C"), "'C'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'"), r"E'a\\b'''");
    }
}

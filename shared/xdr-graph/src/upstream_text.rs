//! Text that came from the network (Graph's `error.message`, Entra's `error_description`, header
//! values) before it reaches a log line, an error, a Lambda error payload or the dead-letter
//! queue: bounded in length, one line, no control or bidirectional-formatting characters (which
//! could forge log lines or hide text in a terminal).

/// Longest upstream message kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// Longest upstream identifier kept (codes, request and trace ids, hosts).
pub const MAX_ID_CHARS: usize = 100;

/// `text` on one line, without control or formatting characters, at most `max_chars`
/// characters (an ellipsis marks a cut).
pub fn bounded(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut kept = 0;
    let mut pending_space = false;
    for c in text.chars() {
        let unsafe_char = c.is_control() || is_format(c);
        if unsafe_char || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if kept + needed > max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            kept += 1;
            pending_space = false;
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// A message: [`bounded`] to [`MAX_MESSAGE_CHARS`].
pub fn message(text: &str) -> String {
    bounded(text, MAX_MESSAGE_CHARS)
}

/// An identifier: [`bounded`] to [`MAX_ID_CHARS`].
pub fn identifier(text: &str) -> String {
    bounded(text, MAX_ID_CHARS)
}

/// Unicode "format" characters that change how text displays: bidirectional overrides and
/// isolates, zero-width characters, the byte order mark, and interlinear annotations.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_become_spaces_on_one_line() {
        let hostile =
            "Bad request.\r\n{\"level\":\"INFO\",\"msg\":\"forged\"}\u{1b}[31mred\u{202e}txt.exe\u{0}";
        let clean = message(hostile);
        assert_eq!(clean, "Bad request. {\"level\":\"INFO\",\"msg\":\"forged\"} [31mred txt.exe");
        assert!(!clean.chars().any(|c| c.is_control() || is_format(c)));
        assert_eq!(message("  \n\t "), "");
        assert_eq!(message("plain"), "plain");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "é".repeat(10_000);
        let cut = message(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(identifier(&"x".repeat(MAX_ID_CHARS)), "x".repeat(MAX_ID_CHARS));
        assert_eq!(bounded("ab cd", 4), "ab c…");
    }
}

//! The wordlm tokeniser (DESIGN.md; scripts/models/train_wordlm.py `tokenize` must agree):
//! lower-case; `’`/`‘` become `'`; a token is one of the punctuation marks `. , ; : ! ?` or a
//! maximal run of `[a-z']` with leading and trailing `'` trimmed (dropped if empty); every
//! other character separates tokens.

/// The punctuation marks that are tokens of their own.
pub const PUNCT: &[char] = &['.', ',', ';', ':', '!', '?'];

/// Splits `text` into tokens.
pub fn tokenize(text: &str) -> Vec<String> {
    // Python's str.lower() and Rust's to_lowercase() follow the same Unicode mappings; any
    // non-ASCII result separates tokens anyway.
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in lower.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' => '\'',
            c => c,
        };
        if c.is_ascii_lowercase() || c == '\'' {
            word.push(c);
            continue;
        }
        push_word(&mut tokens, &mut word);
        if PUNCT.contains(&c) {
            tokens.push(c.to_string());
        }
    }
    push_word(&mut tokens, &mut word);
    tokens
}

fn push_word(tokens: &mut Vec<String>, word: &mut String) {
    let trimmed = word.trim_matches('\'');
    if !trimmed.is_empty() {
        tokens.push(trimmed.to_owned());
    }
    word.clear();
}

/// Whether `token` is a punctuation token.
pub fn is_punct(token: &str) -> bool {
    let mut chars = token.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if PUNCT.contains(&c))
}

/// Whether `text` ends in whitespace, as Python's `str.isspace()` sees it (Unicode White_Space
/// plus the ASCII separators 0x1C..=0x1F).
pub fn ends_in_whitespace(text: &str) -> bool {
    text.chars()
        .next_back()
        .is_some_and(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn words_and_punctuation() {
        assert_eq!(
            t("It is a truth, universally acknowledged!"),
            [
                "it",
                "is",
                "a",
                "truth",
                ",",
                "universally",
                "acknowledged",
                "!"
            ]
        );
        assert_eq!(
            t("Mr. Darcy;  Miss Bennet?:"),
            ["mr", ".", "darcy", ";", "miss", "bennet", "?", ":"]
        );
        assert_eq!(t(""), Vec::<String>::new());
        assert_eq!(t("   \n\t"), Vec::<String>::new());
    }

    #[test]
    fn apostrophes() {
        assert_eq!(
            t("don't 'tis ’twas o’clock"),
            ["don't", "tis", "twas", "o'clock"]
        );
        assert_eq!(t("'''"), Vec::<String>::new());
        assert_eq!(t("the Bennets' house"), ["the", "bennets", "house"]);
        assert_eq!(t("‘quoted’"), ["quoted"]);
    }

    #[test]
    fn everything_else_separates() {
        assert_eq!(t("well-bred"), ["well", "bred"]);
        assert_eq!(t("café au lait"), ["caf", "au", "lait"]);
        assert_eq!(t("1811 chapter2x"), ["chapter", "x"]);
        assert_eq!(t("a_b\"c\"(d)"), ["a", "b", "c", "d"]);
        assert_eq!(t("...?!"), [".", ".", ".", "?", "!"]);
        // U+212A KELVIN SIGN lower-cases to an ASCII k, as in Python.
        assert_eq!(t("\u{212A}ing"), ["king"]);
        // İ lower-cases to i + U+0307: the combining dot splits the word, as in Python.
        assert_eq!(t("İt"), ["i", "t"]);
    }

    #[test]
    fn helpers() {
        assert!(is_punct(".") && is_punct("?"));
        assert!(!is_punct("a") && !is_punct("..") && !is_punct(""));
        assert!(ends_in_whitespace("my dear "));
        assert!(ends_in_whitespace("x\u{a0}"));
        assert!(ends_in_whitespace("x\u{1f}"));
        assert!(!ends_in_whitespace("my dear"));
        assert!(!ends_in_whitespace(""));
    }
}

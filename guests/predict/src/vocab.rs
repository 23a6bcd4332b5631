//! The vocabulary: line i of vocab.txt is token i. Every request is a fresh instance, so the
//! shipped vocabulary is not built at run time: `build.rs` compiles it into two static tables
//! (the tokens by id, the ids by text), and a lookup is a binary search.

use std::borrow::Cow;

use crate::tokenize::is_punct;

#[cfg(test)]
#[path = "order.rs"]
mod order;

mod tables {
    include!(concat!(env!("OUT_DIR"), "/vocab_tables.rs"));
}

/// `<pad>`: left padding of the context.
pub const PAD: usize = 0;
/// `<unk>`: any token not in the vocabulary.
pub const UNK: usize = 1;

pub struct Vocab<'a> {
    /// Token i at index i.
    tokens: Cow<'a, [&'a str]>,
    /// The ids, ordered by their token's text (ties by id).
    by_text: Cow<'a, [u16]>,
}

impl Vocab<'static> {
    /// The vocabulary of the wordlm model, as compiled in.
    pub fn shipped() -> Self {
        Vocab {
            tokens: Cow::Borrowed(&tables::TOKENS),
            by_text: Cow::Borrowed(&tables::BY_TEXT),
        }
    }
}

impl<'a> Vocab<'a> {
    /// A vocabulary from text, one token a line, built at run time (what `build.rs` does for
    /// the shipped one).
    #[cfg(test)]
    pub fn new(text: &'a str) -> Vocab<'a> {
        let tokens: Vec<&str> = text.lines().collect();
        let by_text = order::ids_by_text(&tokens)
            .into_iter()
            .map(|id| u16::try_from(id).unwrap())
            .collect::<Vec<_>>();
        Vocab {
            tokens: Cow::Owned(tokens),
            by_text: Cow::Owned(by_text),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The id of `token`: the first line that holds it.
    pub fn id(&self, token: &str) -> Option<usize> {
        let first = self
            .by_text
            .partition_point(|&id| self.tokens[usize::from(id)] < token);
        let id = usize::from(*self.by_text.get(first)?);
        (self.tokens[id] == token).then_some(id)
    }

    pub fn token(&self, id: usize) -> &'a str {
        self.tokens[id]
    }

    /// Whether token `id` may be suggested: not `<pad>`, `<unk>` or punctuation.
    pub fn is_word(&self, id: usize) -> bool {
        id != PAD && id != UNK && !is_punct(self.tokens[id])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_words() {
        let v = Vocab::new("<pad>\n<unk>\n.\nthe\nthe\nmiss\n");
        assert_eq!(v.len(), 6);
        assert_eq!(v.id("the"), Some(3));
        assert_eq!(v.id("miss"), Some(5));
        assert_eq!(v.id("mis"), None);
        assert_eq!(v.id("zzz"), None);
        assert_eq!(v.id(""), None);
        assert_eq!(v.token(5), "miss");
        assert!(!v.is_word(PAD) && !v.is_word(UNK) && !v.is_word(2));
        assert!(v.is_word(3));
    }

    #[test]
    fn the_shipped_tables_are_the_vocabulary_file() {
        let text = include_str!("../../../models/wordlm/vocab.txt");
        let (shipped, read) = (Vocab::shipped(), Vocab::new(text));
        assert_eq!(shipped.len(), read.len());
        assert_eq!(shipped.token(PAD), "<pad>");
        assert_eq!(shipped.token(UNK), "<unk>");
        assert!(shipped.len() > 100);
        for (line, token) in text.lines().enumerate() {
            assert_eq!(shipped.token(line), token);
            let first = text.lines().position(|t| t == token).unwrap();
            assert_eq!(shipped.id(token), Some(first), "{token:?}");
        }
        assert_eq!(shipped.id("not-a-word-of-it"), None);
    }
}

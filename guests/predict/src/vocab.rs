//! The vocabulary: line i of vocab.txt is token i. Built once per request (every request is a
//! fresh instance), so it is kept cheap: borrowed lines and one hash map with a fast hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::tokenize::is_punct;

/// `<pad>`: left padding of the context.
pub const PAD: usize = 0;
/// `<unk>`: any token not in the vocabulary.
pub const UNK: usize = 1;

pub struct Vocab<'a> {
    tokens: Vec<&'a str>,
    ids: HashMap<&'a str, usize, BuildHasherDefault<Fnv1a>>,
}

impl<'a> Vocab<'a> {
    pub fn new(text: &'a str) -> Vocab<'a> {
        let tokens: Vec<&str> = text.lines().collect();
        let mut ids = HashMap::with_capacity_and_hasher(tokens.len(), Default::default());
        for (id, &token) in tokens.iter().enumerate() {
            // The first occurrence wins, should a token ever repeat.
            ids.entry(token).or_insert(id);
        }
        Vocab { tokens, ids }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn id(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    pub fn token(&self, id: usize) -> &'a str {
        self.tokens[id]
    }

    /// Whether token `id` may be suggested: not `<pad>`, `<unk>` or punctuation.
    pub fn is_word(&self, id: usize) -> bool {
        id != PAD && id != UNK && !is_punct(self.tokens[id])
    }
}

/// FNV-1a: short keys, no untrusted flooding concern (the keys are the vocabulary), and much
/// cheaper than SipHash for the 6000 inserts every request makes.
#[derive(Default)]
pub struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
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
        assert_eq!(v.token(5), "miss");
        assert!(!v.is_word(PAD) && !v.is_word(UNK) && !v.is_word(2));
        assert!(v.is_word(3));
    }

    #[test]
    fn the_shipped_vocabulary_has_its_specials_first() {
        let v = Vocab::new(crate::VOCAB);
        assert_eq!(v.token(PAD), "<pad>");
        assert_eq!(v.token(UNK), "<unk>");
        assert!(v.len() > 100);
    }
}

//! The order of the vocabulary's lookup table, one rule for `build.rs` (which compiles the
//! shipped table in) and for the vocabularies the tests build at run time.

/// The ids of `tokens` ordered by their text; ties (a token repeated) by id, so that a binary
/// search finds the first occurrence.
pub fn ids_by_text(tokens: &[&str]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..tokens.len()).collect();
    ids.sort_by(|&a, &b| tokens[a].cmp(tokens[b]).then(a.cmp(&b)));
    ids
}

//! Turns the model's vocabulary (line i of `vocab.txt` is token i) into static tables compiled
//! into the app: the tokens in id order, and their ids in the order of their text. Every
//! request is a fresh instance, so a vocabulary built at run time (6000 lines split, a hash
//! map of 6000 entries in fresh memory) was built again for each one.

use std::fmt::Write;

#[path = "src/order.rs"]
mod order;

fn main() {
    let source = "../../models/wordlm/vocab.txt";
    println!("cargo:rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).expect("reads models/wordlm/vocab.txt");
    let tokens: Vec<&str> = text.lines().collect();
    assert!(u16::try_from(tokens.len()).is_ok(), "ids are kept as u16");
    let by_text = order::ids_by_text(&tokens);

    let mut out = String::new();
    // Debug of a str is a valid Rust string literal, escapes included.
    table(
        &mut out,
        "TOKENS",
        "&str",
        tokens.iter().map(|token| format!("{token:?}")),
    );
    table(
        &mut out,
        "BY_TEXT",
        "u16",
        by_text.iter().map(|id| id.to_string()),
    );
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("vocab_tables.rs");
    std::fs::write(path, out).expect("writes the tables");
}

/// Appends `pub(crate) static NAME: [TYPE; N] = [...];` with the given items.
fn table(out: &mut String, name: &str, ty: &str, items: impl ExactSizeIterator<Item = String>) {
    writeln!(out, "pub(crate) static {name}: [{ty}; {}] = [", items.len()).unwrap();
    for item in items {
        writeln!(out, "    {item},").unwrap();
    }
    writeln!(out, "];").unwrap();
}

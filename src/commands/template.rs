//! `edgenn new`: a new guest app from a template, embedded in the binary so it works from any
//! directory: Rust (`guests/template`, a WAGI module), Python (`guests/template-python`) or
//! JavaScript (`guests/template-js`), both components.

use crate::nn::manifest::is_valid_name;
use anyhow::{Context, bail};
use std::path::Path;

const TEMPLATE_NAME: &str = "my-app";
/// Where a component template's build.sh finds the edgenn checkout by default.
const HOME_PLACEHOLDER: &str = "@EDGENN_HOME@";

/// The languages an app can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A WAGI module with the Rust guest SDK.
    Rust,
    /// A wasi:http component, built with componentize-py.
    Python,
    /// A wasi:http component, built with jco componentize.
    Js,
}

/// (path in the new app, contents) of every file of the Rust template.
const RUST_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../guests/template/Cargo.toml")),
    ("edgenn.toml", include_str!("../../guests/template/edgenn.toml")),
    ("README.md", include_str!("../../guests/template/README.md")),
    ("src/main.rs", include_str!("../../guests/template/src/main.rs")),
    // The versions the bundled guests are built and tested with; cargo drops what the new app
    // does not use, and the build needs no registry look-up to resolve.
    ("Cargo.lock", include_str!("../../guests/Cargo.lock")),
];

const PYTHON_FILES: &[(&str, &str)] = &[
    ("app.py", include_str!("../../guests/template-python/app.py")),
    ("edgenn.toml", include_str!("../../guests/template-python/edgenn.toml")),
    ("README.md", include_str!("../../guests/template-python/README.md")),
    ("build.sh", include_str!("../../guests/template-python/build.sh")),
];

const JS_FILES: &[(&str, &str)] = &[
    ("app.js", include_str!("../../guests/template-js/app.js")),
    ("edgenn.toml", include_str!("../../guests/template-js/edgenn.toml")),
    ("README.md", include_str!("../../guests/template-js/README.md")),
    ("build.sh", include_str!("../../guests/template-js/build.sh")),
];

/// This checkout: a component app builds with its wit/ and tools.
fn home() -> String {
    env!("CARGO_MANIFEST_DIR").to_string()
}

/// Where the guest SDK of this checkout is; a new app depends on it by path.
fn sdk_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/sdk").display().to_string()
}

/// Writes a new app called `name` in `language` into `dir` (which must not exist or be empty).
pub fn create(name: &str, language: Language, dir: &Path) -> anyhow::Result<()> {
    if !is_valid_name(name) || name.contains('.') {
        bail!("app name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'");
    }
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let files = match language {
        Language::Rust => RUST_FILES,
        Language::Python => PYTHON_FILES,
        Language::Js => JS_FILES,
    };
    for (path, contents) in files {
        let text = render(path, contents, name);
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", target.display()))?;
        }
    }
    Ok(())
}

fn render(path: &str, contents: &str, name: &str) -> String {
    let crate_name = name.replace('-', "_");
    let mut text = contents.replace(TEMPLATE_NAME, name).replace("my_app", &crate_name);
    if path == "build.sh" {
        text = text.replacen(
            &format!("${{EDGENN_HOME:-{HOME_PLACEHOLDER}}}"),
            &format!("${{EDGENN_HOME:-{}}}", home()),
            1,
        );
    }
    if path == "edgenn.toml" {
        // In the guests workspace the module lands in ../target; on its own, in ./target.
        text = text.replace("../target/", "target/");
    }
    if path == "Cargo.toml" {
        // Outside the guests workspace the app is its own workspace, finds the SDK by absolute
        // path, and needs the release profile the guest sysroot was built for.
        text = text.replace("path = \"../sdk\"", &format!("path = {:?}", sdk_path()));
        if !text.contains("[workspace]") {
            text.push_str("\n# A workspace of its own, wherever it is created.\n[workspace]\n");
        }
        if !text.contains("[profile.release]") {
            text.push_str(
                "\n# The guest std is built with panic=abort; small, fast modules.\n[profile.release]\nopt-level = 3\npanic = \"abort\"\nlto = true\ncodegen-units = 1\nstrip = true\n",
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_standalone_app() {
        let dir = std::env::temp_dir().join(format!("edgenn-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create("word-counter", Language::Rust, &dir).unwrap();
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"word-counter\""), "{cargo}");
        assert!(cargo.contains("[workspace]"), "{cargo}");
        assert!(cargo.contains(&sdk_path()), "{cargo}");
        let manifest = std::fs::read_to_string(dir.join("edgenn.toml")).unwrap();
        assert!(manifest.contains("word-counter"), "{manifest}");
        assert!(!manifest.contains(TEMPLATE_NAME), "{manifest}");
        assert!(create("word-counter", Language::Rust, &dir).is_err(), "refuses to overwrite");
        assert!(create("Bad Name", Language::Rust, &dir.join("x")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renders_python_and_js_apps_that_build_against_this_checkout() {
        for (language, source) in [(Language::Python, "app.py"), (Language::Js, "app.js")] {
            let dir = std::env::temp_dir().join(format!("edgenn-new-{language:?}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            create("word-counter", language, &dir).unwrap();
            assert!(dir.join(source).is_file());
            let manifest = std::fs::read_to_string(dir.join("edgenn.toml")).unwrap();
            assert!(manifest.contains("name = \"word-counter\"") && !manifest.contains(TEMPLATE_NAME), "{manifest}");
            let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
            assert!(build.contains(&format!("${{EDGENN_HOME:-{}}}", home())), "{build}");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("build.sh")).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

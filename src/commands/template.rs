//! `edgenn new`: a new guest app from a template, embedded in the binary so it works from any
//! directory: Rust as a WAGI module (`guests/template`) or as a component
//! (`guests/template-component`, the same handler), Python (`guests/template-python`) or
//! JavaScript (`guests/template-js`), both components.

use crate::nn::manifest::is_valid_name;
use anyhow::{Context, bail};
use std::path::Path;

/// The app name in the templates, replaced by the new app's (`my_app` too, as a crate name);
/// the Rust component template's own name comes first.
const TEMPLATE_NAME: &str = "my-app";
const COMPONENT_TEMPLATE_NAME: &str = "my-component";
/// Where a component template's build.sh finds the edgenn checkout by default.
const HOME_PLACEHOLDER: &str = "@EDGENN_HOME@";

/// The languages an app can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// The Rust guest SDK: a WAGI module, or with `--component` a wasi:http component.
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
    ("src/handler.rs", include_str!("../../guests/template/src/handler.rs")),
    // The versions the bundled guests are built and tested with; cargo drops what the new app
    // does not use, and the build needs no registry look-up to resolve.
    ("Cargo.lock", include_str!("../../guests/Cargo.lock")),
];

/// The Rust template as a component: the same handler, exported by `src/lib.rs`.
const RUST_COMPONENT_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../guests/template-component/Cargo.toml")),
    ("edgenn.toml", include_str!("../../guests/template-component/edgenn.toml")),
    ("README.md", include_str!("../../guests/template-component/README.md")),
    ("build.sh", include_str!("../../guests/template-component/build.sh")),
    ("src/lib.rs", include_str!("../../guests/template-component/src/lib.rs")),
    ("src/handler.rs", include_str!("../../guests/template/src/handler.rs")),
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

/// Writes a new app called `name` in `language` into `dir` (which must not exist or be empty);
/// a Rust app is a WAGI module unless `component` (Python and JavaScript apps always are).
pub fn create(name: &str, language: Language, component: bool, dir: &Path) -> anyhow::Result<()> {
    if !is_valid_name(name) || name.contains('.') {
        bail!("app name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'");
    }
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let (files, package) = match language {
        Language::Rust if component => (RUST_COMPONENT_FILES, COMPONENT_TEMPLATE_NAME),
        Language::Rust => (RUST_FILES, TEMPLATE_NAME),
        Language::Python => (PYTHON_FILES, TEMPLATE_NAME),
        Language::Js => (JS_FILES, TEMPLATE_NAME),
    };
    for (path, contents) in files {
        let text = render(path, contents, name, package);
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

/// The template's file at `path` for the app `name`; `package` is the template's own package
/// name (the other template's is not this app's).
fn render(path: &str, contents: &str, name: &str, package: &str) -> String {
    let crate_name = name.replace('-', "_");
    let lock;
    let contents = if path == "Cargo.lock" {
        // The guests' lock file holds both Rust templates; renamed, they would be one package
        // twice.
        let other = if package == TEMPLATE_NAME { COMPONENT_TEMPLATE_NAME } else { TEMPLATE_NAME };
        let entry = format!("[[package]]\nname = \"{other}\"\n");
        lock = contents.split("\n\n").filter(|block| !block.starts_with(&entry)).collect::<Vec<_>>().join("\n\n");
        &lock
    } else {
        contents
    };
    let mut text = contents
        .replace(COMPONENT_TEMPLATE_NAME, name)
        .replace("my_component", &crate_name)
        .replace(TEMPLATE_NAME, name)
        .replace("my_app", &crate_name);
    if path == "src/lib.rs" {
        // Inside guests/ the component template borrows the WAGI template's handler by path;
        // a new app has its own copy beside lib.rs: the lines that say so go.
        let mut borrowed = false;
        text = text
            .lines()
            .filter(|line| {
                borrowed |= line.starts_with("// Inside guests/");
                let keep = !borrowed;
                borrowed &= !line.starts_with("#[path = ");
                keep
            })
            .map(|line| format!("{line}\n"))
            .collect();
    }
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
        create("word-counter", Language::Rust, false, &dir).unwrap();
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"word-counter\""), "{cargo}");
        assert!(cargo.contains("[workspace]"), "{cargo}");
        assert!(cargo.contains(&sdk_path()), "{cargo}");
        // Every file of the template is there (main.rs declares `mod handler`).
        assert!(dir.join("src/main.rs").is_file() && dir.join("src/handler.rs").is_file());
        let manifest = std::fs::read_to_string(dir.join("edgenn.toml")).unwrap();
        assert!(manifest.contains("word-counter"), "{manifest}");
        let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
        assert_eq!(lock.matches("name = \"word-counter\"").count(), 1, "one package of that name");
        assert!(!manifest.contains(TEMPLATE_NAME), "{manifest}");
        assert!(create("word-counter", Language::Rust, false, &dir).is_err(), "refuses to overwrite");
        assert!(create("Bad Name", Language::Rust, false, &dir.join("x")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renders_a_rust_component_with_the_templates_handler() {
        let dir = std::env::temp_dir().join(format!("edgenn-new-component-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create("word-counter", Language::Rust, true, &dir).unwrap();
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"word-counter\"") && cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
        assert!(cargo.contains(&format!("path = {:?}, features = [\"component\"]", sdk_path())), "{cargo}");
        assert!(cargo.contains("[workspace]") && cargo.contains("[profile.release]"), "{cargo}");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("mod handler;\n") && !lib.contains("#[path") && !lib.contains("Inside guests/"), "{lib}");
        assert!(lib.contains("component_main!(handler::handle)"), "{lib}");
        let handler = std::fs::read_to_string(dir.join("src/handler.rs")).unwrap();
        assert!(handler.contains("pub fn handle(") && handler.contains("\"app\": \"word-counter\""));
        let manifest = std::fs::read_to_string(dir.join("edgenn.toml")).unwrap();
        assert!(manifest.contains("wasm = \"target/components/word-counter.wasm\""), "{manifest}");
        assert!(manifest.contains("routes = [\"/v1/word-counter\"]"), "{manifest}");
        assert!(!manifest.contains(COMPONENT_TEMPLATE_NAME) && !manifest.contains(TEMPLATE_NAME), "{manifest}");
        let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
        assert!(build.contains("release/word_counter.wasm") && build.contains(&home()), "{build}");
        let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
        assert_eq!(lock.matches("name = \"word-counter\"").count(), 1, "one package of that name");
        assert!(lock.contains("name = \"serde\"") && !lock.contains(TEMPLATE_NAME), "the other template's entry goes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renders_python_and_js_apps_that_build_against_this_checkout() {
        for (language, source) in [(Language::Python, "app.py"), (Language::Js, "app.js")] {
            let dir = std::env::temp_dir().join(format!("edgenn-new-{language:?}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            create("word-counter", language, true, &dir).unwrap();
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

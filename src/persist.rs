//! Deployed apps and models added over HTTP on disk, so they come back after a restart: one
//! [`VersionStore`] per kind (`apps`, `models`) in the data directory.
//!
//! ```text
//! <data>/staging/<kind>/<id>/        an upload being written
//! <data>/<kind>/<name>/<version>/    one deployed version: for an app edgenn.toml, app.wasm and
//!                                    its bundled files; for a model model.toml and its files
//! <data>/<kind>/<name>/current       symlink -> <version>, swapped with an atomic rename
//! ```
//!
//! A deploy writes and validates a new version directory, then renames a fresh symlink over
//! `current`. A gateway killed at any point restarts with either the old or the new version,
//! never neither; leftovers (staging, versions `current` does not name) are removed at start.
//!
//! Durable across a power loss, not only a crash: every file and directory of a staged upload
//! is `fsync`ed before it is renamed into place as a version, and the parent directory after
//! every rename, create and delete, so `current` never names files the kernel had not yet
//! written. Writers of a staged directory need not flush anything themselves.
//!
//! Every method that takes a name refuses one that is not a single, valid path component (see
//! [`name_component`]): the store never touches a path outside its own directory, whoever
//! calls it.

use crate::nn::manifest::is_valid_name;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const CURRENT: &str = "current";

/// The versions of one kind of thing (`apps`, `models`) in a data directory.
pub struct VersionStore {
    /// `<data>/<kind>`.
    root: PathBuf,
    /// `<data>/staging/<kind>`.
    staging: PathBuf,
    sequence: AtomicU64,
}

impl VersionStore {
    /// Opens (creating) `<data>/<kind>` and removes what an interrupted deploy left.
    pub fn open(data: &Path, kind: &str) -> io::Result<Self> {
        let root = data.join(name_component(kind)?);
        std::fs::create_dir_all(&root)?;
        let staging = data.join("staging").join(kind);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        let store = Self { root, staging, sequence: AtomicU64::new(0) };
        for dir in store.named_dirs()? {
            store.remove_stale_versions(&dir)?;
        }
        Ok(store)
    }

    fn named_dirs(&self) -> io::Result<Vec<PathBuf>> {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(&self.root)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        dirs.sort();
        Ok(dirs)
    }

    /// A unique, sortable name for a new version or staging directory.
    fn unique(&self) -> String {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("v{millis}-{}-{}", std::process::id(), self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// `<data>/<kind>/<name>`, for a name that is one valid path component.
    fn named_dir(&self, name: &str) -> io::Result<PathBuf> {
        Ok(self.root.join(name_component(name)?))
    }

    /// A new empty staging directory for an upload.
    pub fn stage(&self) -> io::Result<PathBuf> {
        let dir = self.staging.join(self.unique());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves a complete staging directory to a new version of `name` (not yet current), after
    /// flushing everything in it to disk.
    pub fn add_version(&self, name: &str, staged: &Path) -> io::Result<PathBuf> {
        let app = self.named_dir(name)?;
        if !app.is_dir() {
            std::fs::create_dir_all(&app)?;
            sync_dir(&self.root)?;
        }
        sync_tree(staged)?;
        let version = app.join(self.unique());
        std::fs::rename(staged, &version)?;
        sync_dir(&app)?;
        if let Some(staging) = staged.parent() {
            sync_dir(staging)?;
        }
        Ok(version)
    }

    /// Makes `version` the one that comes back after a restart, then removes older versions.
    pub fn make_current(&self, name: &str, version: &Path) -> io::Result<()> {
        let app = self.named_dir(name)?;
        if version.parent() != Some(app.as_path()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the version is not one of this app's"));
        }
        let target = version.file_name().ok_or_else(|| io::Error::other("version directory has no name"))?;
        let temporary = app.join(format!(".{CURRENT}.{}", self.unique()));
        std::os::unix::fs::symlink(target, &temporary)?;
        std::fs::rename(&temporary, app.join(CURRENT))?;
        sync_dir(&app)?;
        self.remove_stale_versions(&app)
    }

    /// Removes a version that failed validation.
    pub fn discard(&self, version: &Path) {
        let _ = std::fs::remove_dir_all(version);
    }

    /// Removes `name` with all its versions; `false` when there was none on disk.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let app = self.named_dir(name)?;
        if !app.exists() {
            return Ok(false);
        }
        // Unlinking `current` first is the atomic step: after it the app does not come back.
        match std::fs::remove_file(app.join(CURRENT)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&app)?;
        std::fs::remove_dir_all(&app)?;
        sync_dir(&self.root)?;
        Ok(true)
    }

    /// The current version directory of every stored name, with the name its directory gives
    /// (a stored manifest must agree with it). Directories whose name is not a valid name are
    /// skipped: the store never wrote them.
    pub fn current_versions(&self) -> io::Result<Vec<(String, PathBuf)>> {
        Ok(self
            .named_dirs()?
            .into_iter()
            .filter_map(|app| {
                let name = app.file_name()?.to_str().filter(|n| name_component(n).is_ok())?.to_string();
                let target = std::fs::read_link(app.join(CURRENT)).ok()?;
                // `current` is a sibling name; anything else was not written by the store.
                let target = target.to_str().filter(|t| is_version_name(t))?.to_string();
                Some((name, app.join(target)))
            })
            .filter(|(_, version)| version.is_dir() && !version.is_symlink())
            .collect())
    }

    /// Whether `name` has a version on disk that comes back after a restart.
    pub fn has_current(&self, name: &str) -> io::Result<bool> {
        Ok(self.named_dir(name)?.join(CURRENT).is_symlink())
    }

    fn remove_stale_versions(&self, app: &Path) -> io::Result<()> {
        let current = std::fs::read_link(app.join(CURRENT)).ok();
        for entry in std::fs::read_dir(app)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == CURRENT || current.as_deref() == Some(Path::new(&name)) {
                continue;
            }
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        if current.is_none() {
            // Nothing was ever made current: an interrupted first deploy.
            let _ = std::fs::remove_dir(app);
        }
        Ok(())
    }
}

/// An app or model name as one path component: a valid name (which has no `/`, no leading
/// `.`) that the OS also parses as exactly one normal component.
pub fn name_component(name: &str) -> io::Result<&str> {
    let mut components = Path::new(name).components();
    let single = matches!((components.next(), components.next()), (Some(Component::Normal(_)), None));
    if is_valid_name(name) && single {
        Ok(name)
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a valid name")))
    }
}

/// A file name from outside (an upload's part, an artifact layer's title) as the relative path
/// of normal components it is stored under (`./a//b` is `a/b`), or `None` when it would leave
/// its directory, is hidden, or is one of `reserved` (files the gateway writes itself).
pub fn stored_file_path(file_name: &str, reserved: &[&str]) -> Option<PathBuf> {
    let path = Path::new(file_name);
    let inside = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let normal: PathBuf = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let reserved = reserved.iter().any(|r| normal == Path::new(r));
    let hidden = normal.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    (inside && !normal.as_os_str().is_empty() && !reserved && !hidden).then_some(normal)
}

/// A version or symlink target as the store names them (`v<millis>-<pid>-<n>`).
fn is_version_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Makes a rename or a new entry durable: the directory itself is flushed.
fn sync_dir(dir: &Path) -> io::Result<()> {
    sync(&std::fs::File::open(dir)?, dir)
}

fn sync(file: &std::fs::File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    #[cfg(test)]
    tests::SYNCED.with(|synced| synced.borrow_mut().push(path.to_path_buf()));
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// Flushes every file and directory under `dir` (a staged upload: a handful of entries).
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            sync(&std::fs::File::open(entry.path())?, &entry.path())?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Every path this thread's store flushed, in order.
        pub(super) static SYNCED: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn synced() -> Vec<PathBuf> {
        SYNCED.with(|s| s.borrow_mut().drain(..).collect())
    }

    #[test]
    fn a_version_is_on_disk_before_it_is_named_and_a_delete_is_durable() {
        let root = scratch("durable");
        let store = VersionStore::open(&root, "apps").unwrap();
        let staged = store.stage().unwrap();
        std::fs::create_dir_all(staged.join("model")).unwrap();
        std::fs::write(staged.join("model/m.onnx"), b"model").unwrap();
        std::fs::write(staged.join("edgenn.toml"), b"manifest").unwrap();
        let version = store.add_version("app", &staged).unwrap();
        let flushed = synced();
        let app = root.join("apps/app");
        // Every file and directory of the upload, before the rename...
        for path in [staged.join("model/m.onnx"), staged.join("model"), staged.join("edgenn.toml"), staged.clone()] {
            assert!(flushed.contains(&path), "{} was not flushed: {flushed:?}", path.display());
        }
        // ...then the directories whose entries changed: the new app directory's parent, and
        // the app directory and staging directory after the rename.
        assert!(flushed.contains(&root.join("apps")) && flushed.contains(&app), "{flushed:?}");
        let position = |p: &Path| flushed.iter().position(|f| f == p).unwrap();
        assert!(position(&staged) < position(&app), "the version directory is flushed before its rename");
        store.make_current("app", &version).unwrap();
        assert!(synced().contains(&app), "the new `current` link is flushed");
        assert!(store.remove("app").unwrap());
        let flushed = synced();
        assert!(flushed.contains(&root.join("apps")), "the delete is flushed in the parent: {flushed:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgenn-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write_version(store: &VersionStore, name: &str, content: &str) -> PathBuf {
        let staged = store.stage().unwrap();
        std::fs::write(staged.join("edgenn.toml"), content).unwrap();
        store.add_version(name, &staged).unwrap()
    }

    #[test]
    fn a_version_comes_back_only_once_current() {
        let root = scratch("current");
        let store = VersionStore::open(&root, "apps").unwrap();
        let v1 = write_version(&store, "app", "one");
        assert!(store.current_versions().unwrap().is_empty(), "not current yet");
        store.make_current("app", &v1).unwrap();
        let v2 = write_version(&store, "app", "two");
        // Killed here: reopening keeps v1 and removes the half-deployed v2.
        let store = VersionStore::open(&root, "apps").unwrap();
        let current = store.current_versions().unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].0, "app");
        assert_eq!(std::fs::read_to_string(current[0].1.join("edgenn.toml")).unwrap(), "one");
        assert!(!v2.exists());
        let v3 = write_version(&store, "app", "three");
        store.make_current("app", &v3).unwrap();
        let current = store.current_versions().unwrap();
        assert_eq!(std::fs::read_to_string(current[0].1.join("edgenn.toml")).unwrap(), "three");
        assert!(!v1.exists(), "older versions are removed after the swap");
        assert!(store.remove("app").unwrap());
        assert!(store.current_versions().unwrap().is_empty());
        assert!(!store.remove("app").unwrap());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn names_that_are_not_one_component_never_reach_the_filesystem() {
        let root = scratch("names");
        let store = VersionStore::open(&root, "apps").unwrap();
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let absolute = outside.display().to_string();
        for name in [absolute.as_str(), "..", ".", "../outside", "a/b", "", "apps/../..", ".hidden"] {
            let error = store.remove(name).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            assert!(store.has_current(name).is_err(), "{name:?}");
            let staged = store.stage().unwrap();
            assert!(store.add_version(name, &staged).is_err(), "{name:?}");
        }
        assert!(outside.is_dir(), "a directory outside the store was touched");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn an_interrupted_first_deploy_leaves_nothing() {
        let root = scratch("first");
        let store = VersionStore::open(&root, "apps").unwrap();
        let _ = write_version(&store, "new-app", "x");
        let _ = store.stage().unwrap();
        let store = VersionStore::open(&root, "apps").unwrap();
        assert!(store.current_versions().unwrap().is_empty());
        assert!(!root.join("apps/new-app").exists());
        assert_eq!(std::fs::read_dir(root.join("staging/apps")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn kinds_in_one_data_directory_keep_to_their_own() {
        let root = scratch("kinds");
        let apps = VersionStore::open(&root, "apps").unwrap();
        let version = write_version(&apps, "digits", "app");
        apps.make_current("digits", &version).unwrap();
        let models = VersionStore::open(&root, "models").unwrap();
        assert!(models.current_versions().unwrap().is_empty(), "an app is not a model");
        let staged_model = models.stage().unwrap();
        // Opening the apps again clears only their own staging.
        let apps = VersionStore::open(&root, "apps").unwrap();
        assert!(staged_model.is_dir());
        assert_eq!(apps.current_versions().unwrap().len(), 1);
        assert!(VersionStore::open(&root, "../outside").is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// File names from outside (upload parts, artifact layer titles): whatever the text, what is
/// stored stays inside its directory.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn a_stored_name_never_leaves_its_directory(name in "([a-z./\\\\~]|\\.\\.|%2e|\u{0}){0,24}") {
            if let Some(path) = stored_file_path(&name, &["model.toml"]) {
                prop_assert!(path.is_relative());
                prop_assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(!path.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')));
                prop_assert_ne!(path, Path::new("model.toml"));
            }
        }
    }
}

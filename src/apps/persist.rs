//! Deployed apps on disk, so they come back after a restart.
//!
//! ```text
//! <data>/staging/<id>/              an upload being written
//! <data>/apps/<name>/<version>/     one deployed version: edgenn.toml, app.wasm, bundled files
//! <data>/apps/<name>/current        symlink -> <version>, swapped with an atomic rename
//! ```
//!
//! A deploy writes and validates a new version directory, then renames a fresh symlink over
//! `current`. A gateway killed at any point restarts with either the old or the new version,
//! never neither; leftovers (staging, versions `current` does not name) are removed at start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const CURRENT: &str = "current";

pub struct AppStore {
    root: PathBuf,
    sequence: AtomicU64,
}

impl AppStore {
    /// Opens (creating) the data directory and removes what an interrupted deploy left.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("apps"))?;
        let staging = root.join("staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        let store = Self { root: root.to_path_buf(), sequence: AtomicU64::new(0) };
        for app in store.app_dirs()? {
            store.remove_stale_versions(&app)?;
        }
        Ok(store)
    }

    fn app_dirs(&self) -> io::Result<Vec<PathBuf>> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.root.join("apps"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// A unique, sortable name for a new version or staging directory.
    fn unique(&self) -> String {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("v{millis}-{}-{}", std::process::id(), self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// A new empty staging directory for an upload.
    pub fn stage(&self) -> io::Result<PathBuf> {
        let dir = self.root.join("staging").join(self.unique());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves a complete staging directory to a new version of `name` (not yet current).
    pub fn add_version(&self, name: &str, staged: &Path) -> io::Result<PathBuf> {
        let app = self.root.join("apps").join(name);
        std::fs::create_dir_all(&app)?;
        let version = app.join(self.unique());
        std::fs::rename(staged, &version)?;
        sync_dir(&app)?;
        Ok(version)
    }

    /// Makes `version` the one that comes back after a restart, then removes older versions.
    pub fn make_current(&self, name: &str, version: &Path) -> io::Result<()> {
        let app = self.root.join("apps").join(name);
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

    /// Removes an app; `false` when there was none on disk.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let app = self.root.join("apps").join(name);
        if !app.exists() {
            return Ok(false);
        }
        // Unlinking `current` first is the atomic step: after it the app does not come back.
        match std::fs::remove_file(app.join(CURRENT)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::remove_dir_all(&app)?;
        Ok(true)
    }

    /// The current version directory of every persisted app.
    pub fn current_versions(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .app_dirs()?
            .into_iter()
            .filter_map(|app| std::fs::read_link(app.join(CURRENT)).ok().map(|target| app.join(target)))
            .filter(|version| version.is_dir())
            .collect())
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

/// Makes a rename durable: the directory entry itself is flushed.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgenn-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write_version(store: &AppStore, name: &str, content: &str) -> PathBuf {
        let staged = store.stage().unwrap();
        std::fs::write(staged.join("edgenn.toml"), content).unwrap();
        store.add_version(name, &staged).unwrap()
    }

    #[test]
    fn a_version_comes_back_only_once_current() {
        let root = scratch("current");
        let store = AppStore::open(&root).unwrap();
        let v1 = write_version(&store, "app", "one");
        assert!(store.current_versions().unwrap().is_empty(), "not current yet");
        store.make_current("app", &v1).unwrap();
        let v2 = write_version(&store, "app", "two");
        // Killed here: reopening keeps v1 and removes the half-deployed v2.
        let store = AppStore::open(&root).unwrap();
        let current = store.current_versions().unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!(std::fs::read_to_string(current[0].join("edgenn.toml")).unwrap(), "one");
        assert!(!v2.exists());
        let v3 = write_version(&store, "app", "three");
        store.make_current("app", &v3).unwrap();
        let current = store.current_versions().unwrap();
        assert_eq!(std::fs::read_to_string(current[0].join("edgenn.toml")).unwrap(), "three");
        assert!(!v1.exists(), "older versions are removed after the swap");
        assert!(store.remove("app").unwrap());
        assert!(store.current_versions().unwrap().is_empty());
        assert!(!store.remove("app").unwrap());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn an_interrupted_first_deploy_leaves_nothing() {
        let root = scratch("first");
        let store = AppStore::open(&root).unwrap();
        let _ = write_version(&store, "new-app", "x");
        let _ = store.stage().unwrap();
        let store = AppStore::open(&root).unwrap();
        assert!(store.current_versions().unwrap().is_empty());
        assert!(!root.join("apps/new-app").exists());
        assert_eq!(std::fs::read_dir(root.join("staging")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&root);
    }
}

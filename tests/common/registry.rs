//! A real OCI registry for the tests: Debian's docker-registry (the CNCF distribution registry,
//! installed by `scripts/registry.sh`) on a free port with its own storage: plain HTTP on
//! loopback, or HTTPS on another address.

use super::{agent, repo};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub address: String,
    pub storage: PathBuf,
    config: PathBuf,
    binary: String,
    tls: bool,
    child: Option<Child>,
}

impl Registry {
    /// Installs and starts a plain-HTTP registry on loopback keeping its blobs under `root`,
    /// and waits until it answers `/v2/`.
    pub fn start(root: &Path) -> Registry {
        Self::start_at(root, "127.0.0.1", None, None)
    }

    /// Like [`Registry::start`] on `ip`, serving HTTPS with `tls` (certificate and key files)
    /// and asking for basic auth with `login` (user, password) if given.
    pub fn start_at(root: &Path, ip: &str, tls: Option<(&Path, &Path)>, login: Option<(&str, &str)>) -> Registry {
        let installed = Command::new("bash").arg(repo().join("scripts/registry.sh")).output().expect("runs bash");
        assert!(
            installed.status.success(),
            "scripts/registry.sh failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let binary = String::from_utf8(installed.stdout).unwrap().trim().to_string();
        let port = std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port();
        let address = format!("{ip}:{port}");
        let storage = root.join("storage");
        let config = root.join("registry.yml");
        std::fs::create_dir_all(root).unwrap();
        let tls_config = tls
            .map(|(certificate, key)| {
                format!("  tls:\n    certificate: {}\n    key: {}\n", certificate.display(), key.display())
            })
            .unwrap_or_default();
        let auth_config = login
            .map(|(user, password)| {
                let hashed = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd runs");
                assert!(hashed.status.success(), "htpasswd failed");
                let file = root.join("htpasswd");
                std::fs::write(&file, hashed.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: edgenn-test\n    path: {}\n", file.display())
            })
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n{tls_config}{auth_config}",
                storage.display()
            ),
        )
        .unwrap();
        let mut registry = Registry { address, storage, config, binary, tls: tls.is_some(), child: None };
        registry.resume();
        registry
    }

    /// Starts the registry again after [`Registry::stop`], on the same port and storage.
    pub fn resume(&mut self) {
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            assert!(started.elapsed() < Duration::from_secs(30), "the registry never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        if self.tls {
            // The tests' HTTP client speaks no TLS: a listening port will do.
            return std::net::TcpStream::connect(&self.address).is_ok();
        }
        agent().get(&format!("http://{}/v2/", self.address)).call().is_ok_and(|r| r.status() == 200)
    }

    /// Stops the registry: it is unreachable until resumed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the registry keeps the blob of `digest` (`sha256:<hex>`).
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

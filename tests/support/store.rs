//! Shared by the image test binaries (images, images_extract, images_import, images_ports): a fresh store per
//! test, torn down through burrow itself, and the generated busybox image they build on. Included with
//! `#[macro_use] #[path = "support/store.rs"] mod store;` after `mod support;`.
#![allow(dead_code)]

use crate::support::oci::{self, Comp, Layer};
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Skips (fails, in strict mode) unless the caller can run rootless containers with subordinate IDs.
macro_rules! setup {
    () => {{
        if let Some(reason) = unusable() {
            skip!("{reason}");
        }
        if subuid_start().is_none() {
            skip!("the caller has no /etc/subuid range (run as burrow-t1)");
        }
    }};
}

/// A fresh store and scratch directory for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempdir() }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = burrow();
        c.args(args).env("BURROW_STORE", self.store());
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        expect(&output(self.cmd(args)), 0)
    }

    pub fn import(&self, path: &Path, extra: &[&str]) -> std::process::Output {
        let mut c = self.cmd(&["import"]);
        c.args(extra).arg(path);
        output(c)
    }

    /// Names of the unpacked layers (and anything else) in the store's layer directory.
    pub fn layers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join("layers"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn images(&self) -> usize {
        std::fs::read_dir(self.store().join("images")).map(|d| d.count()).unwrap_or(0)
    }

    /// Tears the store down through burrow itself (its files belong to subordinate IDs).
    pub fn cleanup(&self) {
        let o = output(self.cmd(&["images", "-q"]));
        let ids: Vec<String> = stdout(&o).lines().map(String::from).collect();
        if !ids.is_empty() {
            let mut c = self.cmd(&["rmi"]);
            c.args(&ids);
            let _ = output(c);
        }
        let _ = output(self.cmd(&["prune"]));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The busybox rootfs of the other tests, as a layer.
pub fn base_layer(comp: Comp) -> Layer {
    let r = Rootfs::new();
    std::fs::write(r.path().join("etc/motd"), "base\n").unwrap();
    std::fs::create_dir_all(r.path().join("srv/data")).unwrap();
    std::fs::write(r.path().join("srv/data/old"), "old\n").unwrap();
    std::fs::write(r.path().join("etc/gone"), "x\n").unwrap();
    Layer { tar: oci::tar_of_dir(r.path()), comp }
}

pub fn app_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo \"cmd $GREETING from $(pwd) as $(id -u):$(id -g)\""],
        "Env": ["GREETING=hello", "PATH=/bin:/usr/bin"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}},
    })
}

//! Open file handles: one real fd per FUSE open, reused for every read and write on it (no
//! reopen per request). Directories have none: `opendir` is left to the kernel.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug)]
pub(crate) struct FileHandle {
    pub(crate) fd: OwnedFd,
    /// Layer the fd was opened in; a read-only fd on a lower file is reopened on the upper
    /// copy once another open copied it up, as kernel overlayfs does.
    pub(crate) layer: usize,
    pub(crate) ino: u64,
    /// `Overlay::copyups` when opened.
    pub(crate) epoch: u64,
    pub(crate) flags: rustix::fs::OFlags,
    pub(crate) reopened: Mutex<Option<Arc<OwnedFd>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Handles {
    map: RwLock<HashMap<u64, Arc<FileHandle>>>,
    next: AtomicU64,
}

impl Handles {
    pub(crate) fn insert(&self, h: FileHandle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(h));
        id
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<FileHandle>> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    pub(crate) fn remove(&self, id: u64) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

//! The inode table: FUSE node ids mapped to where each merged entry lives.
//!
//! A node keeps its path relative to the layer roots (the same in every layer) and the layers
//! that hold it. Nodes are shared by real identity (device, inode) so that hard links reach one
//! FUSE inode and the kernel's attribute cache stays coherent between their names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rustix::fs::Stat;

pub(crate) const ROOT: u64 = 1;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Told to the kernel with the id: a new generation makes it drop a stale inode.
    pub(crate) generation: u64,
    /// Removed from the overlay while the kernel may still hold it.
    pub(crate) dead: bool,
    pub(crate) path: PathBuf,
    /// The merged listing of a directory during a readdir pass (see `dir_entries`).
    pub(crate) listing: Option<std::sync::Arc<Vec<super::readdir::Entry>>>,
    /// Other names of a hard-linked file, used when `path` is removed or renamed away.
    pub(crate) aliases: Vec<PathBuf>,
    /// Top-most layer holding the real entry (`UPPER` once copied up).
    pub(crate) layer: usize,
    /// For directories: every layer merged into it, top first, cut at an opaque one.
    pub(crate) dir_layers: Vec<usize>,
    pub(crate) is_dir: bool,
    pub(crate) key: (u64, u64),
    nlookup: u64,
}

impl Node {
    fn new(path: PathBuf, found: &Found, is_dir: bool, generation: u64) -> Self {
        Node {
            generation,
            dead: false,
            path,
            listing: None,
            aliases: Vec::new(),
            layer: found.layer,
            dir_layers: found.dir_layers.clone(),
            is_dir,
            key: (found.stat.st_dev, found.stat.st_ino),
            nlookup: 1,
        }
    }
}

/// What a lookup found in the layers.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) layer: usize,
    pub(crate) stat: Stat,
    pub(crate) dir_layers: Vec<usize>,
}

/// Live nodes by FUSE node id. fuser replies use the node id as `st_ino`, so node ids are the
/// real inode numbers (tagged per filesystem, see `Layers::report_ino`), which keeps them stable
/// across `forget`; an entry copied up keeps the number it had in its lower layer.
#[derive(Debug, Default)]
pub(crate) struct Table {
    nodes: HashMap<u64, Node>,
    /// Node ids of entries copied up during this mount, by upper identity.
    copied: HashMap<(u64, u64), u64>,
    /// Directory nodes by path: a copy-up of an ancestor must update their layers.
    dirs: HashMap<PathBuf, u64>,
    next_gen: u64,
}

impl Table {
    pub(crate) fn new(root: Found) -> Self {
        let mut t = Table::default();
        t.dirs.insert(PathBuf::new(), ROOT);
        let key = (root.stat.st_dev, root.stat.st_ino);
        t.nodes.insert(
            ROOT,
            Node {
                generation: 0,
                dead: false,
                path: PathBuf::new(),
                listing: None,
                aliases: Vec::new(),
                layer: root.layer,
                dir_layers: root.dir_layers,
                is_dir: true,
                key,
                nlookup: 1,
            },
        );
        t
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The node id of the entry `found` at `path`, whose tagged real inode number is `id_hint`.
    pub(crate) fn id_for(&self, path: &Path, found: &Found, id_hint: u64) -> u64 {
        let key = (found.stat.st_dev, found.stat.st_ino);
        let mut id = self.copied.get(&key).copied().unwrap_or(id_hint);
        if found.layer != super::layers::UPPER && !super::layers::is_dir(&found.stat) && found.stat.st_nlink > 1 {
            // Each name of a lower hard link is its own file in the overlay: copying one up
            // breaks the link, as in kernel overlayfs without `index`. Sharing one node would
            // let a change through one name show through the others.
            id = path_id(path);
        }
        if id == ROOT && key != self.nodes[&ROOT].key {
            id ^= 1 << 62;
        }
        id
    }

    /// Registers one more kernel reference to the entry found at `path`; returns its node id
    /// and generation.
    pub(crate) fn remember(&mut self, path: PathBuf, found: Found, id_hint: u64) -> (u64, u64) {
        let key = (found.stat.st_dev, found.stat.st_ino);
        let id = self.id_for(&path, &found, id_hint);
        let is_dir = super::layers::is_dir(&found.stat);
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.key == key && !node.dead {
                node.nlookup += 1;
                if node.is_dir && node.path != path {
                    self.dirs.remove(&node.path);
                    self.dirs.insert(path.clone(), id);
                }
                if !node.is_dir && node.path != path {
                    node.aliases.retain(|a| *a != path);
                    let old = std::mem::replace(&mut node.path, path);
                    node.aliases.push(old);
                } else {
                    node.path = path;
                }
                node.layer = found.layer;
                node.dir_layers = found.dir_layers;
                return (id, node.generation);
            }
            // The real inode number was reused by a new file while the kernel still holds the
            // removed one: same id, new generation, so the kernel drops its stale inode. The
            // lookup counts add up because forgets for either arrive under this id.
            if node.is_dir && self.dirs.get(&node.path) == Some(&id) {
                self.dirs.remove(&node.path);
            }
            self.next_gen += 1;
            let nlookup = node.nlookup + 1;
            *node = Node::new(path.clone(), &found, is_dir, self.next_gen);
            node.nlookup = nlookup;
        } else {
            self.next_gen += 1;
            self.nodes.insert(id, Node::new(path.clone(), &found, is_dir, self.next_gen));
        }
        if is_dir {
            self.dirs.insert(path, id);
        }
        (id, self.next_gen)
    }

    /// The entry of node `id` is gone from the overlay (its last name was removed).
    pub(crate) fn mark_dead(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.dead = true;
            self.copied.remove(&node.key);
            if node.is_dir && self.dirs.get(&node.path) == Some(&id) {
                self.dirs.remove(&node.path);
            }
        }
    }

    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup == 0 {
            if node.is_dir && self.dirs.get(&node.path) == Some(&ino) {
                self.dirs.remove(&node.path);
            }
            self.nodes.remove(&ino);
        }
    }

    /// Records that `ino` now lives in the upper layer as the real inode `stat`.
    pub(crate) fn moved_up(&mut self, ino: u64, stat: &Stat) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.key = (stat.st_dev, stat.st_ino);
        node.layer = super::layers::UPPER;
        if node.is_dir && node.dir_layers.first() != Some(&super::layers::UPPER) {
            node.dir_layers.insert(0, super::layers::UPPER);
        }
        self.copied.insert(node.key, ino);
    }

    /// After a rename, moves the paths of `from` and everything below it to `to`.
    pub(crate) fn rename_paths(&mut self, from: &Path, to: &Path) {
        for (&id, node) in self.nodes.iter_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                let new = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
                if node.is_dir {
                    if self.dirs.get(&node.path) == Some(&id) {
                        self.dirs.remove(&node.path);
                    }
                    self.dirs.insert(new.clone(), id);
                }
                node.path = new;
            }
        }
    }

    /// The name `path` of node `id` is gone: fall back to another name of the file; with no
    /// name left (`last`: the real file had no other link), the node is dead.
    pub(crate) fn name_removed(&mut self, id: u64, path: &Path, last: bool) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.aliases.retain(|a| a != path);
        if node.path == path {
            match node.aliases.pop() {
                Some(other) => node.path = other,
                None if last => self.mark_dead(id),
                None => {}
            }
        }
    }

    /// The non-directory node `id` was renamed from `from` to `to`.
    pub(crate) fn name_moved(&mut self, id: u64, from: &Path, to: &Path) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.aliases.retain(|a| a != from && a != to);
            if node.path == from {
                node.path = to.to_path_buf();
            } else if node.path != to {
                node.aliases.push(to.to_path_buf());
            }
        }
    }

    /// Keeps (or drops) the listing of directory `id` for the current readdir pass.
    pub(crate) fn set_listing(&mut self, id: u64, listing: Option<std::sync::Arc<Vec<super::readdir::Entry>>>) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.listing = listing;
        }
    }

    /// The live directory node at `path`, if the kernel holds one.
    pub(crate) fn dir_at(&self, path: &Path) -> Option<u64> {
        self.dirs.get(path).copied()
    }
}

/// A stable node id for a path, out of the range of real inode numbers.
fn path_id(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() | (1 << 63)
}

fn time(sec: i64, nsec: u64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec as u32)
    }
}

pub(crate) fn file_type(mode: u32) -> FileType {
    match rustix::fs::FileType::from_raw_mode(mode) {
        rustix::fs::FileType::Directory => FileType::Directory,
        rustix::fs::FileType::Symlink => FileType::Symlink,
        rustix::fs::FileType::Fifo => FileType::NamedPipe,
        rustix::fs::FileType::Socket => FileType::Socket,
        rustix::fs::FileType::CharacterDevice => FileType::CharDevice,
        rustix::fs::FileType::BlockDevice => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

// The nanosecond fields are u64 on x86_64 but u32 elsewhere: the casts are for the others.
#[allow(clippy::unnecessary_cast)]
/// Attributes as the kernel overlay shows them: the real inode's, with the node id as inode
/// number and `nlink = 1` for merged directories.
pub(crate) fn attr(st: &Stat, ino: u64, merged_dir: bool) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if merged_dir { 1 } else { st.st_nlink as u32 },
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

//! The inode table: FUSE node ids mapped to the real objects behind each merged entry.
//!
//! A node holds `O_PATH` handles of its real objects (one for a file, one per merged layer for
//! a directory), and where it lives: its parent node and name. Every operation starts from
//! these handles, so a rename or a symlink planted meanwhile cannot redirect it. Nodes are
//! shared by real identity (device, inode) so that hard links reach one FUSE inode.
//!
//! Descriptor budget: the kernel may hold a node for every entry it has cached (a million for
//! a big tree). Handles of live, named nodes are closed beyond a budget, oldest first, and
//! opened again on demand from the parent's handle by name (see `Overlay::reals`), checked
//! against the node's (device, inode). Nodes without a name (removed while the kernel holds
//! them) and the root keep theirs. A node stays in the table while the kernel holds it or
//! while one of its children does (children name their parent by id).

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rustix::fs::Stat;

use super::layers::{is_dir, Real, UPPER};
use super::readdir::Entry;

pub(crate) const ROOT: u64 = 1;
/// The parent of the root and of removed nodes.
const NONE: u64 = 0;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Told to the kernel with the id: a new generation makes it drop a stale inode.
    pub(crate) generation: u64,
    /// Removed from the overlay while the kernel may still hold it: it has no name left.
    pub(crate) dead: bool,
    pub(crate) parent: u64,
    pub(crate) name: OsString,
    /// Other names (parent, name) of a hard-linked upper file.
    pub(crate) aliases: Vec<(u64, OsString)>,
    /// The merged listing of a directory during a readdir pass (see `dir_entries`).
    pub(crate) listing: Option<Arc<Vec<Entry>>>,
    /// Layers holding the entry, top first: one for a non-directory, every merged layer for a
    /// directory, cut at an opaque one.
    pub(crate) layers: Vec<usize>,
    /// `O_PATH` handles parallel to `layers`; `None` once closed to stay within the budget.
    pub(crate) fds: Option<Vec<Arc<OwnedFd>>>,
    fd_stamp: u64,
    pub(crate) is_dir: bool,
    pub(crate) key: (u64, u64),
    nlookup: u64,
    /// Children (and aliases) naming this node as their parent.
    refs: u64,
}

impl Node {
    pub(crate) fn layer(&self) -> usize {
        self.layers[0]
    }

    pub(crate) fn merged(&self) -> bool {
        self.is_dir && self.layers.len() > 1
    }

    fn pinned(&self, id: u64) -> bool {
        id == ROOT || self.dead
    }
}

/// What a lookup found in the layers: the real objects' handles, top first.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) layers: Vec<usize>,
    pub(crate) fds: Vec<Arc<OwnedFd>>,
    pub(crate) stat: Stat,
}

impl Found {
    pub(crate) fn layer(&self) -> usize {
        self.layers[0]
    }

    pub(crate) fn reals(&self) -> Vec<Real> {
        self.layers.iter().zip(&self.fds).map(|(&layer, fd)| Real { layer, fd: fd.clone() }).collect()
    }

    pub(crate) fn key(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }
}

/// Live nodes by FUSE node id. fuser replies use the node id as `st_ino`, so node ids are the
/// real inode numbers (tagged per filesystem, see `Layers::report_ino`), which keeps them stable
/// across `forget`; an entry copied up keeps the number it had in its lower layer.
#[derive(Debug)]
pub(crate) struct Table {
    /// Boxed: the map's buckets stay small, so growing it for a big tree does not briefly
    /// need twice the memory of every node.
    nodes: HashMap<u64, Box<Node>>,
    /// Node ids of entries copied up during this mount, by upper identity.
    copied: HashMap<(u64, u64), u64>,
    next_gen: u64,
    /// Open node handles, the most they may be, and the order they were opened in.
    open_fds: usize,
    budget: usize,
    opened: VecDeque<(u64, u64)>,
    next_stamp: u64,
    /// Handles taken from nodes, closed by [`Table::take_closing`]'s caller once the table is
    /// unlocked: closing the last handle of a removed file frees the file (ext4 truncates and
    /// frees its inode there), which must not hold up the other request thread.
    closing: Vec<Arc<OwnedFd>>,
}

impl Table {
    pub(crate) fn new(root: Found, budget: usize) -> Self {
        let mut t = Table {
            nodes: HashMap::new(),
            copied: HashMap::new(),
            next_gen: 0,
            open_fds: 0,
            budget: budget.max(1),
            opened: VecDeque::new(),
            next_stamp: 0,
            closing: Vec::new(),
        };
        let mut node = new_node(NONE, OsString::new(), &root, 0);
        node.nlookup = 1;
        t.open_fds += root.fds.len();
        t.nodes.insert(ROOT, Box::new(node));
        t
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id).map(|n| &**n)
    }

    /// The node id of the entry `found` as `name` in `parent`, whose tagged real inode number
    /// is `id_hint`.
    pub(crate) fn id_for(&self, parent: u64, name: &OsStr, found: &Found, id_hint: u64) -> u64 {
        let mut id = self.copied.get(&found.key()).copied().unwrap_or(id_hint);
        if found.layer() != UPPER && !is_dir(&found.stat) && found.stat.st_nlink > 1 {
            // Each name of a lower hard link is its own file in the overlay: copying one up
            // breaks the link, as in kernel overlayfs without `index`. Sharing one node would
            // let a change through one name show through the others.
            id = name_id(parent, name);
        }
        if id == ROOT && found.key() != self.nodes[&ROOT].key {
            id ^= 1 << 62;
        }
        if id == NONE {
            id = 1 << 61;
        }
        id
    }

    /// Registers one more kernel reference to the entry `found` as `name` in `parent`;
    /// returns its node id and generation.
    pub(crate) fn remember(&mut self, parent: u64, name: &OsStr, found: Found, id_hint: u64) -> (u64, u64) {
        let id = self.id_for(parent, name, &found, id_hint);
        let key = found.key();
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.key == key && !node.dead {
                node.nlookup += 1;
                let generation = node.generation;
                self.add_name(id, parent, name);
                self.set_fds(id, &found);
                return (id, generation);
            }
            // The real inode number was reused by a new file while the kernel still holds the
            // removed one: same id, new generation, so the kernel drops its stale inode. The
            // lookup counts add up because forgets for either arrive under this id.
            let nlookup = node.nlookup + 1;
            let refs = node.refs;
            self.unlink_parents(id);
            self.close_fds(id);
            self.next_gen += 1;
            let mut fresh = new_node(parent, name.to_owned(), &found, self.next_gen);
            fresh.nlookup = nlookup;
            fresh.refs = refs;
            self.nodes.insert(id, Box::new(fresh));
        } else {
            self.next_gen += 1;
            self.nodes.insert(id, Box::new(new_node(parent, name.to_owned(), &found, self.next_gen)));
        }
        self.add_ref(parent);
        self.open_fds += self.nodes[&id].fds.as_ref().map_or(0, Vec::len);
        self.opened_fds(id);
        (id, self.next_gen)
    }

    /// `name` in `parent` is a name of node `id`: it becomes the name used from now on.
    fn add_name(&mut self, id: u64, parent: u64, name: &OsStr) {
        let node = &self.nodes[&id];
        if node.parent == parent && node.name == name {
            return;
        }
        if node.is_dir {
            let old = node.parent;
            self.add_ref(parent);
            let node = self.nodes.get_mut(&id).expect("checked above");
            node.parent = parent;
            node.name = name.to_owned();
            self.drop_ref(old);
            return;
        }
        let had = node.aliases.iter().any(|(p, n)| *p == parent && n == name);
        if !had {
            self.add_ref(parent);
        }
        let node = self.nodes.get_mut(&id).expect("checked above");
        node.aliases.retain(|(p, n)| !(*p == parent && n == name));
        let old = (std::mem::replace(&mut node.parent, parent), std::mem::replace(&mut node.name, name.to_owned()));
        node.aliases.push(old);
    }

    /// Takes the handles of a fresh lookup when they differ from the node's (a copy-up
    /// happened) or the node's were closed.
    fn set_fds(&mut self, id: u64, found: &Found) {
        let node = &self.nodes[&id];
        let same = node.layers == found.layers;
        if (node.fds.is_some() || found.fds.is_empty()) && same {
            return;
        }
        self.close_fds(id);
        let node = self.nodes.get_mut(&id).expect("caller checked");
        node.layers = found.layers.clone();
        if found.fds.is_empty() {
            return;
        }
        node.fds = Some(found.fds.clone());
        self.open_fds += found.fds.len();
        self.opened_fds(id);
    }

    /// Handles opened again for node `id` (its own were closed); returns the ones in use.
    pub(crate) fn install_fds(&mut self, id: u64, fds: Vec<Arc<OwnedFd>>) -> Option<Vec<Arc<OwnedFd>>> {
        let node = self.nodes.get_mut(&id)?;
        if fds.is_empty() {
            return node.fds.clone();
        }
        if let Some(have) = &node.fds {
            return Some(have.clone());
        }
        self.open_fds += fds.len();
        node.fds = Some(fds.clone());
        self.opened_fds(id);
        Some(fds)
    }

    fn close_fds(&mut self, id: u64) {
        if let Some(fds) = self.nodes.get_mut(&id).and_then(|n| n.fds.take()) {
            self.open_fds -= fds.len();
            self.closing.extend(fds);
        }
    }

    /// The handles taken from nodes since the last call: the caller drops them after
    /// unlocking the table.
    pub(crate) fn take_closing(&mut self) -> Vec<Arc<OwnedFd>> {
        std::mem::take(&mut self.closing)
    }

    /// Records that node `id` opened its handles, and closes the oldest ones over the budget.
    fn opened_fds(&mut self, id: u64) {
        self.next_stamp += 1;
        let stamp = self.next_stamp;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.fd_stamp = stamp;
            self.opened.push_back((id, stamp));
        }
        let mut tries = self.opened.len();
        while self.open_fds > self.budget && tries > 0 {
            tries -= 1;
            let Some((old, stamp)) = self.opened.pop_front() else { break };
            let Some(node) = self.nodes.get(&old) else { continue };
            if node.fd_stamp != stamp || node.pinned(old) || old == id {
                if old == id && node.fd_stamp == stamp {
                    self.opened.push_back((old, stamp));
                }
                continue;
            }
            self.close_fds(old);
        }
        if self.opened.len() > 4 * self.budget + 64 {
            // Stale entries of re-opened or removed nodes: keep the queue as small as the table.
            let nodes = &self.nodes;
            self.opened.retain(|(id, stamp)| nodes.get(id).is_some_and(|n| n.fd_stamp == *stamp && n.fds.is_some()));
        }
    }

    fn add_ref(&mut self, parent: u64) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.refs += 1;
        }
    }

    fn drop_ref(&mut self, parent: u64) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.refs = p.refs.saturating_sub(1);
        }
        self.maybe_remove(parent);
    }

    /// Releases the references node `id` holds on its parents (all its names).
    fn unlink_parents(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let mut parents: Vec<u64> = node.aliases.drain(..).map(|(p, _)| p).collect();
        parents.push(std::mem::replace(&mut node.parent, NONE));
        for p in parents {
            self.drop_ref(p);
        }
    }

    fn maybe_remove(&mut self, id: u64) {
        let remove = id != ROOT && self.nodes.get(&id).is_some_and(|n| n.nlookup == 0 && n.refs == 0);
        if remove {
            self.close_fds(id);
            self.unlink_parents(id);
            // `copied` keeps its entry: an entry copied up keeps its number for the mount's life.
            self.nodes.remove(&id);
        }
    }

    /// The entry of node `id` is gone from the overlay (its last name was removed); it keeps
    /// its handles, the only way left to reach it.
    pub(crate) fn mark_dead(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        node.dead = true;
        node.listing = None;
        let key = node.key;
        self.copied.remove(&key);
        self.unlink_parents(id);
    }

    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        node.nlookup = node.nlookup.saturating_sub(n);
        self.maybe_remove(ino);
    }

    /// Node `id` now lives in the upper layer as the real object `fd` with attributes `stat`.
    pub(crate) fn moved_up(&mut self, id: u64, stat: &Stat, fd: Arc<OwnedFd>) {
        let Some(node) = self.nodes.get(&id) else { return };
        let mut layers = vec![UPPER];
        let mut fds = vec![fd];
        if node.is_dir {
            layers.extend(node.layers.iter().copied().filter(|&l| l != UPPER));
            match &node.fds {
                Some(old) => fds.extend(old.iter().cloned()),
                None => {
                    // The lower handles were closed: they are opened again with the upper one.
                    let node = self.nodes.get_mut(&id).expect("checked above");
                    node.layers = layers;
                    node.key = (stat.st_dev, stat.st_ino);
                    self.copied.insert(node.key, id);
                    return;
                }
            }
        }
        self.close_fds(id);
        let node = self.nodes.get_mut(&id).expect("checked above");
        node.key = (stat.st_dev, stat.st_ino);
        node.layers = layers;
        self.open_fds += fds.len();
        node.fds = Some(fds);
        self.copied.insert(node.key, id);
        self.opened_fds(id);
    }

    /// The name `name` in `parent` of node `id` is gone: fall back to another name of the
    /// file; with no name left (`last`: the real file had no other link), the node is dead.
    pub(crate) fn name_removed(&mut self, id: u64, parent: u64, name: &OsStr, last: bool) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let before = node.aliases.len();
        node.aliases.retain(|(p, n)| !(*p == parent && n == name));
        let mut released = before - node.aliases.len();
        if node.parent == parent && node.name == name {
            match node.aliases.pop() {
                Some((p, n)) => {
                    node.parent = p;
                    node.name = n;
                    released += 1;
                }
                None if last => return self.mark_dead(id),
                None => {}
            }
        }
        for _ in 0..released {
            self.drop_ref(parent);
        }
    }

    /// Node `id` was renamed from `from` to `to` (each a parent id and a name).
    pub(crate) fn name_moved(&mut self, id: u64, from: (u64, &OsStr), to: (u64, &OsStr)) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let mut drops = Vec::new();
        let before = node.aliases.len();
        node.aliases.retain(|(p, n)| !((*p == from.0 && n == from.1) || (*p == to.0 && n == to.1)));
        if node.aliases.len() != before {
            drops.push(from.0);
        }
        if node.parent == from.0 && node.name == from.1 {
            node.parent = to.0;
            node.name = to.1.to_owned();
            drops.push(from.0);
        } else if !(node.parent == to.0 && node.name == to.1) {
            node.aliases.push((to.0, to.1.to_owned()));
        }
        self.add_ref(to.0);
        for p in drops {
            self.drop_ref(p);
        }
    }

    /// Keeps (or drops) the listing of directory `id` for the current readdir pass.
    pub(crate) fn set_listing(&mut self, id: u64, listing: Option<Arc<Vec<Entry>>>) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.listing = listing;
        }
    }
}

fn new_node(parent: u64, name: OsString, found: &Found, generation: u64) -> Node {
    Node {
        generation,
        dead: false,
        parent,
        name,
        aliases: Vec::new(),
        listing: None,
        layers: found.layers.clone(),
        // A file found by a lookup that did not open it: opened by name when first used.
        fds: (!found.fds.is_empty()).then(|| found.fds.clone()),
        fd_stamp: 0,
        is_dir: is_dir(&found.stat),
        key: found.key(),
        nlookup: 1,
        refs: 0,
    }
}

/// A stable node id for a name in a directory, out of the range of real inode numbers.
fn name_id(parent: u64, name: &OsStr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    name.hash(&mut h);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    /// A `Found` for a fresh object: an `O_PATH` handle of `/`, with a made-up inode number
    /// (the table only compares identities).
    fn found(ino: u64, dir: bool) -> Found {
        let fd = rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let mut stat = rustix::fs::fstat(&fd).unwrap();
        stat.st_ino = ino;
        if !dir {
            stat.st_mode = (stat.st_mode & !libc::S_IFMT) | libc::S_IFREG;
            stat.st_nlink = 1;
        }
        Found { layers: vec![UPPER], fds: vec![Arc::new(fd)], stat }
    }

    fn open(t: &Table, id: u64) -> bool {
        t.get(id).is_some_and(|n| n.fds.is_some())
    }

    #[test]
    fn handles_beyond_the_budget_are_closed_oldest_first_except_pinned_ones() {
        let mut t = Table::new(found(1, true), 3);
        let (d, _) = t.remember(ROOT, OsStr::new("d"), found(10, true), 10);
        let ids: Vec<u64> =
            (0..6).map(|i| t.remember(d, OsStr::new(&format!("f{i}")), found(20 + i, false), 20 + i).0).collect();
        assert!(t.open_fds <= 3, "open handles {} over the budget", t.open_fds);
        assert!(open(&t, ROOT), "the root keeps its handle");
        assert!(open(&t, ids[5]), "the newest keeps its handle");
        assert!(!open(&t, ids[0]) && !open(&t, d), "the oldest were closed");
        // A removed node keeps its handle for good: it cannot be opened again by name.
        t.install_fds(ids[0], found(20, false).fds);
        t.name_removed(ids[0], d, OsStr::new("f0"), true);
        for i in 0..6 {
            t.remember(d, OsStr::new(&format!("g{i}")), found(40 + i, false), 40 + i);
        }
        assert!(open(&t, ids[0]), "a dead node lost its handle");
        assert!(t.get(ids[0]).unwrap().dead);
    }

    #[test]
    fn a_parent_stays_while_a_child_names_it_and_goes_with_the_last_child() {
        let mut t = Table::new(found(1, true), 100);
        let (d, _) = t.remember(ROOT, OsStr::new("d"), found(10, true), 10);
        let (f, _) = t.remember(d, OsStr::new("f"), found(11, false), 11);
        t.forget(d, 1);
        assert!(t.get(d).is_some(), "the child still names its parent");
        t.forget(f, 1);
        assert!(t.get(f).is_none() && t.get(d).is_none(), "both go once nothing holds them");
        assert_eq!(t.open_fds, 1, "only the root's handle is left open");
    }

    #[test]
    fn a_rename_moves_the_parent_reference() {
        let mut t = Table::new(found(1, true), 100);
        let (a, _) = t.remember(ROOT, OsStr::new("a"), found(10, true), 10);
        let (b, _) = t.remember(ROOT, OsStr::new("b"), found(11, true), 11);
        let (f, _) = t.remember(a, OsStr::new("f"), found(12, false), 12);
        t.name_moved(f, (a, OsStr::new("f")), (b, OsStr::new("g")));
        let n = t.get(f).unwrap();
        assert_eq!((n.parent, n.name.as_os_str()), (b, OsStr::new("g")));
        t.forget(a, 1);
        assert!(t.get(a).is_none(), "the old parent is no longer named by the child");
        t.forget(b, 1);
        assert!(t.get(b).is_some(), "the new parent is");
    }
}

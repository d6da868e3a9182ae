//! The copy-on-write layout of the host-root default.
//!
//! Kernel overlayfs cannot take the host's `/` as one lower layer inside a user namespace: `/` has submounts
//! (`/proc`, `/sys`, ...) that are locked to the namespace, and the kernel refuses to clone a mount whose
//! locked children it would uncover ("failed to clone lowerpath"). So the root is a tmpfs holding one overlay
//! per top-level directory that contains no other filesystem (`/usr`, `/etc`, `/opt`, ...); a directory that
//! does contain one (say `/home` on its own disk, or `/run`) is bound read-only with everything below it, and
//! top-level symlinks (`/bin -> usr/bin`) are recreated. Pure: computed from a listing and mountinfo.

use std::path::{Path, PathBuf};

/// What to do with each top-level entry of the host's `/`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostLayout {
    /// Overlaid copy-on-write, one kernel overlay each.
    pub layered: Vec<PathBuf>,
    /// Bound read-only with their submounts.
    pub readonly: Vec<PathBuf>,
    /// Symlinks recreated as they are: (link, target).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Empty directories for what the container mounts itself.
    pub empty: Vec<PathBuf>,
    /// `--upper DIR`: layer NAME in DIR/upper/NAME and DIR/work/NAME. None: on a tmpfs, thrown away.
    pub keep: Option<PathBuf>,
    /// `--overlay-driver kernel`: a directory that cannot be overlaid is an error, not a read-only bind.
    pub strict: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    Symlink(PathBuf),
    Other,
}

/// Directories the container replaces with its own mounts.
const REPLACED: [&str; 4] = ["proc", "sys", "dev", "tmp"];

/// Decides the layout from the entries of `/` and the host's mountinfo.
pub fn layout(entries: &[(String, EntryKind)], mountinfo: &str, keep: Option<&Path>, strict: bool) -> HostLayout {
    let mountpoints: Vec<&str> = mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    let mut out = HostLayout { keep: keep.map(Path::to_path_buf), strict, ..HostLayout::default() };
    for (name, kind) in entries {
        let path = Path::new("/").join(name);
        let holds_mount = mountpoints.iter().any(|m| Path::new(m).starts_with(&path));
        // An upper inside its own lower is refused by overlayfs.
        let holds_keep = keep.is_some_and(|k| k.starts_with(&path));
        match kind {
            EntryKind::Symlink(target) => out.links.push((path, target.clone())),
            EntryKind::Dir if REPLACED.contains(&name.as_str()) => out.empty.push(path),
            EntryKind::Dir if holds_mount || holds_keep => out.readonly.push(path),
            EntryKind::Dir => out.layered.push(path),
            EntryKind::Other => out.readonly.push(path),
        }
    }
    out
}

/// Reads the host's `/` and mountinfo.
pub fn read_layout(keep: Option<&Path>, strict: bool) -> std::io::Result<HostLayout> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir("/")? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let t = e.file_type()?;
        let kind = if t.is_symlink() {
            EntryKind::Symlink(std::fs::read_link(e.path())?)
        } else if t.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        entries.push((name, kind));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(layout(&entries, &mountinfo, keep, strict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_holding_filesystems_are_read_only_the_rest_layered() {
        let entries = vec![
            ("bin".to_string(), EntryKind::Symlink("usr/bin".into())),
            ("etc".to_string(), EntryKind::Dir),
            ("home".to_string(), EntryKind::Dir),
            ("proc".to_string(), EntryKind::Dir),
            ("run".to_string(), EntryKind::Dir),
            ("usr".to_string(), EntryKind::Dir),
            ("var".to_string(), EntryKind::Dir),
            ("vmlinuz".to_string(), EntryKind::Other),
        ];
        let mi = "21 1 8:1 / / rw - ext4 a rw\n22 21 0:5 / /proc rw - proc p rw\n23 21 0:6 / /run rw - tmpfs t rw\n\
                  24 21 8:2 / /home/big rw - ext4 b rw\n";
        let l = layout(&entries, mi, Some(Path::new("/var/lib/burrow/state")), false);
        assert_eq!(l.layered, vec![PathBuf::from("/etc"), PathBuf::from("/usr")]);
        assert_eq!(
            l.readonly,
            vec![PathBuf::from("/home"), PathBuf::from("/run"), PathBuf::from("/var"), PathBuf::from("/vmlinuz")]
        );
        assert_eq!(l.links, vec![(PathBuf::from("/bin"), PathBuf::from("usr/bin"))]);
        assert_eq!(l.empty, vec![PathBuf::from("/proc")]);
    }
}

//! The host canary: a directory of the user's, outside every layer and container, holding a file
//! with known content, mode and xattrs, a symlink and one more entry, all with fixed old times.
//! Its fingerprint covers everything a write through a wrong path would change (content, size,
//! mode, owner, link count, xattrs, the listing, mtime and ctime of each entry and the directory):
//! ctime cannot be set back, so even a change that was undone shows.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Size of the canary file; race.c's HOST_SIZE (a read or stat of that size is a leak).
pub const HOST_SIZE: usize = 4099;

pub struct Canary {
    pub dir: PathBuf,
    before: Vec<String>,
}

impl Canary {
    /// Creates `parent/canary` and takes its fingerprint.
    pub fn create(parent: &Path) -> Result<Canary, String> {
        let dir = parent.join("canary");
        let e = |what: &str, err: std::io::Error| format!("canary {what} in {}: {err}", dir.display());
        fs::create_dir(&dir).map_err(|x| e("mkdir", x))?;
        let f = dir.join("f");
        let data: Vec<u8> = (0..HOST_SIZE).map(|i| (i % 251) as u8).collect();
        fs::write(&f, data).map_err(|x| e("write f", x))?;
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).map_err(|x| e("chmod f", x))?;
        rustix::fs::setxattr(&f, "user.hostcanary", b"secret", rustix::fs::XattrFlags::empty())
            .map_err(|x| e("setxattr f", x.into()))?;
        std::os::unix::fs::symlink("host-link-target", dir.join("l")).map_err(|x| e("symlink l", x))?;
        fs::write(dir.join("host-only"), b"").map_err(|x| e("write host-only", x))?;
        set_dir_mode(&dir, 0o755)?;
        for p in [f, dir.join("l"), dir.join("host-only"), dir.clone()] {
            let t = rustix::fs::Timespec { tv_sec: 978_307_200, tv_nsec: 0 };
            let ts = rustix::fs::Timestamps { last_access: t, last_modification: t };
            rustix::fs::utimensat(rustix::fs::CWD, &p, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|x| format!("utimensat {}: {x}", p.display()))?;
        }
        let before = fingerprint(&dir);
        Ok(Canary { dir, before })
    }

    /// A canary another process made: its state now is the reference.
    pub fn existing(dir: &Path) -> Canary {
        Canary { dir: dir.to_path_buf(), before: fingerprint(dir) }
    }

    /// `Err` with the differing lines when anything of the canary changed.
    pub fn check(&self) -> Result<(), String> {
        let now = fingerprint(&self.dir);
        if now == self.before {
            return Ok(());
        }
        let mut out = String::new();
        for l in &self.before {
            if !now.contains(l) {
                out += &format!("  before: {l}\n");
            }
        }
        for l in &now {
            if !self.before.contains(l) {
                out += &format!("  after:  {l}\n");
            }
        }
        Err(format!("the host canary {} changed:\n{out}", self.dir.display()))
    }
}

fn set_dir_mode(dir: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|x| format!("chmod {}: {x}", dir.display()))
}

/// One line per entry (the directory first, then its entries sorted by name).
pub fn fingerprint(dir: &Path) -> Vec<String> {
    let mut lines = vec![entry_line(dir, ".")];
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => return vec![format!("readdir {}: {e}", dir.display())],
    };
    names.sort();
    lines.extend(names.iter().map(|n| entry_line(&dir.join(n), n)));
    lines
}

fn entry_line(p: &Path, name: &str) -> String {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => return format!("{name}: lstat error {e}"),
    };
    let extra = if m.file_type().is_symlink() {
        format!("-> {}", fs::read_link(p).map(|t| t.display().to_string()).unwrap_or_else(|e| e.to_string()))
    } else if m.is_file() {
        match fs::read(p) {
            Ok(d) => format!("content fnv={:016x}", fnv64(&d)),
            Err(e) => format!("read error {e}"),
        }
    } else {
        String::new()
    };
    format!(
        "{name}: mode={:o} owner={}:{} size={} nlink={} mtime={}.{} ctime={}.{} {extra} xattrs=[{}]",
        m.mode(),
        m.uid(),
        m.gid(),
        m.size(),
        m.nlink(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        xattrs(p)
    )
}

fn xattrs(p: &Path) -> String {
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut buf[..]) {
        Ok(n) => n,
        Err(e) => return format!("llistxattr error {e}"),
    };
    let mut out: Vec<String> = Vec::new();
    for name in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut val = vec![0u8; 4096];
        let v = rustix::fs::lgetxattr(p, name.as_str(), &mut val[..])
            .map(|len| val[..len].escape_ascii().to_string())
            .unwrap_or_else(|e| format!("<{e}>"));
        out.push(format!("{name}={v}"));
    }
    out.sort();
    out.join(",")
}

fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

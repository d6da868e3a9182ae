//! Each hostile layer shape of extract.rs's table, crafted byte by byte (the tar crate's builder refuses to
//! write most of them), extracted in-process into `base/root` beside a `base/outside` directory that must
//! stay untouched.

use super::extract::{extract, ExtractError, Options, Report};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A tar archive written header by header.
#[derive(Default)]
struct Tar(Vec<u8>);

const DIR: u8 = b'5';
const FILE: u8 = b'0';
const SYMLINK: u8 = b'2';
const HARDLINK: u8 = b'1';
const PAX: u8 = b'x';

impl Tar {
    /// One entry with raw name and link name bytes (no validation), `size` as declared and `data` as written.
    fn raw(&mut self, kind: u8, name: &[u8], link: &[u8], mode: u32, size: u64, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.data(data)
    }

    fn data(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(FILE, name.as_bytes(), b"", 0o644, data.len() as u64, data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(DIR, name.as_bytes(), b"", mode, 0, b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(SYMLINK, name.as_bytes(), target.as_bytes(), 0o777, 0, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(HARDLINK, name.as_bytes(), target.as_bytes(), 0o644, 0, b"")
    }

    fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len}{rest}").as_bytes());
        }
        self.raw(PAX, b"././@PaxHeader", b"", 0o644, body.len() as u64, &body)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

struct Scene {
    base: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let base = tempfile::Builder::new().prefix("burrow-extract.").tempdir_in(std::env::temp_dir()).unwrap();
        std::fs::create_dir(base.path().join("root")).unwrap();
        std::fs::create_dir(base.path().join("outside")).unwrap();
        std::fs::set_permissions(base.path().join("outside"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(base.path().join("outside/secret"), b"keep").unwrap();
        Scene { base }
    }

    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    fn outside(&self) -> String {
        self.base.path().join("outside").display().to_string()
    }

    fn run(&self, tar: &[u8]) -> Result<Report, ExtractError> {
        let root = std::fs::File::open(self.root()).unwrap();
        let opts = Options { chown: false, ..Options::default() };
        extract(tar, root.as_fd(), &opts)
    }

    /// The outside directory is exactly as created: one file, mode 0700, content intact.
    fn assert_outside_untouched(&self) {
        let out = self.base.path().join("outside");
        let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "something was written outside");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777, 0o700, "outside's mode changed");
        assert_eq!(std::fs::read(out.join("secret")).unwrap(), b"keep");
        let base: Vec<_> = std::fs::read_dir(self.base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(base.len(), 2, "something was written beside the layer: {base:?}");
    }
}

fn rejected(r: Result<Report, ExtractError>, entry: &str) {
    match r {
        Err(ExtractError::Rejected { entry: e, .. }) => assert_eq!(e, entry),
        other => panic!("expected {entry:?} to be rejected, got {other:?}"),
    }
}

#[test]
fn dotdot_and_absolute_paths_are_rejected() {
    let s = Scene::new();
    rejected(s.run(&Tar::default().file("../outside/pwned", b"x").finish()), "../outside/pwned");
    rejected(s.run(&Tar::default().file("a/../../outside/pwned", b"x").finish()), "a/../../outside/pwned");
    let abs = format!("{}/pwned", s.outside());
    rejected(s.run(&Tar::default().file(&abs, b"x").finish()), &abs);
    s.assert_outside_untouched();
}

#[test]
fn a_file_through_a_planted_symlink_is_rejected() {
    // RUSTSEC-2018-0002: a symlink, then a file whose path goes through it.
    let s = Scene::new();
    let tar = Tar::default().symlink("link", &s.outside()).file("link/pwned", b"x").finish();
    rejected(s.run(&tar), "link/pwned");
    let tar = Tar::default().symlink("up", "..").file("up/outside/pwned", b"x").finish();
    rejected(s.run(&tar), "up/outside/pwned");
    // A chain: each link relative and harmless-looking.
    let tar = Tar::default()
        .dir("d", 0o755)
        .symlink("d/l1", "../l2")
        .symlink("l2", "../outside")
        .file("d/l1/pwned", b"x")
        .finish();
    rejected(s.run(&tar), "d/l1/pwned");
    s.assert_outside_untouched();
}

#[test]
fn a_directory_through_a_symlink_is_rejected() {
    // RUSTSEC-2021-0080: directories created outside through a symlink.
    let s = Scene::new();
    let tar = Tar::default().symlink("link", &s.outside()).dir("link/sub/", 0o755).finish();
    rejected(s.run(&tar), "link/sub/");
    let tar = Tar::default().symlink("link2", &s.outside()).file("link2/sub/deeper/f", b"x").finish();
    rejected(s.run(&tar), "link2/sub/deeper/f");
    s.assert_outside_untouched();
}

#[test]
fn hard_links_out_of_the_layer_are_rejected() {
    let s = Scene::new();
    rejected(s.run(&Tar::default().hardlink("h", "../outside/secret").finish()), "h");
    rejected(s.run(&Tar::default().hardlink("h", &format!("{}/secret", s.outside())).finish()), "h");
    let tar = Tar::default().symlink("link", &s.outside()).hardlink("h", "link/secret").finish();
    rejected(s.run(&tar), "h");
    // A link then a file written through it: the hard link would share the outside inode.
    rejected(s.run(&Tar::default().hardlink("h2", "missing").finish()), "h2");
    s.assert_outside_untouched();
    assert_eq!(std::fs::metadata(s.base.path().join("outside/secret")).unwrap().nlink(), 1);
}

#[test]
fn the_layer_root_as_a_symlink_is_rejected() {
    // umoci CVE-2021-29136: an entry named "." that is a symlink.
    let s = Scene::new();
    rejected(s.run(&Tar::default().symlink(".", &s.outside()).file("pwned", b"x").finish()), ".");
    rejected(s.run(&Tar::default().symlink("./", &s.outside()).finish()), "./");
    rejected(s.run(&Tar::default().file(".", b"x").finish()), ".");
    s.assert_outside_untouched();
    // A directory entry "." is fine and sets the root's mode.
    let r = s.run(&Tar::default().dir("./", 0o751).file("./ok", b"y").finish()).unwrap();
    assert_eq!(r.entries, 2);
    assert_eq!(std::fs::metadata(s.root()).unwrap().permissions().mode() & 0o7777, 0o751);
}

#[test]
fn modes_are_never_applied_through_a_symlink() {
    // tar-rs CVE-2026-33056: a directory entry whose name is (or later becomes) a symlink to a directory
    // outside, then a chmod that follows it.
    let s = Scene::new();
    s.run(&Tar::default().symlink("d", &s.outside()).dir("d", 0o777).finish()).unwrap();
    assert!(std::fs::symlink_metadata(s.root().join("d")).unwrap().is_dir(), "the directory replaced the link");
    let s2 = Scene::new();
    s2.run(&Tar::default().dir("e", 0o777).symlink("e", &s2.outside()).finish()).unwrap();
    assert!(std::fs::symlink_metadata(s2.root().join("e")).unwrap().file_type().is_symlink());
    s.assert_outside_untouched();
    s2.assert_outside_untouched();
}

#[test]
fn pax_size_wins_and_hides_nothing() {
    // tokio-tar CVE-2025-62518: the ustar header says 0 bytes, the PAX header the real size; a parser that
    // believes the ustar size reads the data as more entries ("smuggled" here).
    let inner = Tar::default().file("smuggled", b"evil").finish();
    let mut t = Tar::default();
    t.pax(&[("size", &inner.len().to_string())]);
    t.raw(FILE, b"outer", b"", 0o644, 0, &inner);
    t.file("after", b"ok");
    let s = Scene::new();
    let r = s.run(&t.finish()).unwrap();
    assert!(!s.root().join("smuggled").exists(), "an entry hidden in the data was extracted");
    assert_eq!(std::fs::read(s.root().join("outer")).unwrap(), inner);
    assert_eq!(std::fs::read(s.root().join("after")).unwrap(), b"ok");
    assert_eq!(r.entries, 2);
}

#[test]
fn absurd_sizes_are_rejected_before_reading() {
    let s = Scene::new();
    let mut t = Tar::default();
    t.pax(&[("size", &(1u64 << 45).to_string())]);
    t.raw(FILE, b"huge", b"", 0o644, 0, b"");
    rejected(s.run(&t.finish()), "huge");
    let small = Options { chown: false, max_entry_size: 3 };
    let root = std::fs::File::open(s.root()).unwrap();
    let e = extract(&Tar::default().file("four", b"1234").finish()[..], root.as_fd(), &small).unwrap_err();
    assert!(e.to_string().contains("declares 4 bytes"), "{e}");
}

#[test]
fn device_nodes_are_skipped_with_one_warning() {
    let s = Scene::new();
    let mut t = Tar::default();
    let mut h = tar::Header::new_ustar();
    h.set_path("dev/null").unwrap();
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_size(0);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    t.0.extend_from_slice(h.as_bytes());
    t.file("kept", b"k");
    let r = s.run(&t.finish()).unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].starts_with("dev/null: device node skipped"), "{:?}", r.warnings);
    assert!(!s.root().join("dev/null").exists());
    assert!(s.root().join("kept").exists());
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16];
    rustix::fs::lgetxattr(p, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

fn is_whiteout(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn oci_whiteouts_become_the_overlay_format() {
    let s = Scene::new();
    let tar = Tar::default()
        .file(".wh.gone", b"")
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"n")
        .file(".wh.back", b"")
        .dir("back/", 0o700)
        .file("kept", b"k")
        .file(".wh.kept", b"")
        .finish();
    s.run(&tar).unwrap();
    let r = s.root();
    assert!(is_whiteout(&r.join("gone")), "gone is not a 0/0 character device");
    assert_eq!(xattr(&r.join("opaque"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(r.join("opaque/new").is_file() && !r.join("opaque/.wh..wh..opq").exists());
    // A directory after its own whiteout replaces what was below: opaque.
    assert!(r.join("back").is_dir());
    assert_eq!(xattr(&r.join("back"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    // A whiteout never removes what this layer itself holds.
    assert_eq!(std::fs::read(r.join("kept")).unwrap(), b"k");
    let bad = Tar::default().file(".wh...", b"").finish();
    rejected(s.run(&bad), ".wh...");
}

#[test]
fn hard_links_modes_and_replacements_are_kept() {
    let s = Scene::new();
    let tar = Tar::default()
        .dir("bin/", 0o755)
        .raw(FILE, b"bin/su", b"", 0o4755, 2, b"su")
        .hardlink("bin/su2", "bin/su")
        .raw(FILE, b"bin/sg", b"", 0o2711, 2, b"sg")
        .file("f", b"first")
        .file("f", b"second")
        .dir("x/", 0o755)
        .file("x/inner", b"i")
        .file("x", b"now a file")
        .dir("ro/", 0o555)
        .file("ro/inside", b"written before the mode")
        .finish();
    s.run(&tar).unwrap();
    let r = s.root();
    let (a, b) = (std::fs::metadata(r.join("bin/su")).unwrap(), std::fs::metadata(r.join("bin/su2")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(a.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::metadata(r.join("bin/sg")).unwrap().permissions().mode() & 0o7777, 0o2711);
    assert_eq!(std::fs::read(r.join("f")).unwrap(), b"second");
    assert_eq!(std::fs::read(r.join("x")).unwrap(), b"now a file");
    assert_eq!(std::fs::metadata(r.join("ro")).unwrap().permissions().mode() & 0o7777, 0o555);
    assert_eq!(std::fs::metadata(r.join("f")).unwrap().mtime(), 1_700_000_000);
    std::fs::set_permissions(r.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn truncated_and_corrupt_archives_fail() {
    let s = Scene::new();
    let mut t = Tar::default();
    t.raw(FILE, b"short", b"", 0o644, 4096, b"only this");
    let mut bytes = t.0.clone();
    bytes.truncate(600);
    assert!(matches!(s.run(&bytes), Err(ExtractError::Io { .. }) | Err(ExtractError::Archive(_))));
    let mut bad = Tar::default().file("a", b"a").finish();
    bad[148] ^= 0x55; // the checksum field
    assert!(matches!(s.run(&bad), Err(ExtractError::Archive(_))));
}

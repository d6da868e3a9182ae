//! A real workload on the FUSE overlay (issue 12): inside `burrow run --rootfs R` (R from
//! scripts/mk-busybox-rootfs.sh, the host's /usr bound read-only for gcc, make, ar, tar), unpack a
//! real tree (the host's /usr/share/perl5) and a generated C project, build it with make and gcc
//! (temporary files, dependency files, `ar` into a temp name then `mv`), run it, rebuild after a
//! header changed, then copy, move, half-delete and re-archive the real tree. Run once with
//! `--overlay-driver kernel` and once with `fuse`, each keeping its layer (`--upper`); the two
//! upper layers' /build trees must be equal byte for byte (content, type, mode, size, link
//! targets), the program's output right, no temporary file left, and R unchanged.

#[path = "overlay_workload/project.rs"]
mod project;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const TREE: &str = "/usr/share/perl5";

fn mk_rootfs(dir: &Path) {
    mk_busybox_rootfs(dir);
    // The host's /usr is bound over the rootfs' /usr: its programs find their loader and
    // libraries through the merged-/usr links.
    for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(target, dir.join(link)).expect("merged-/usr link");
    }
    std::fs::create_dir(dir.join("in")).expect("/in mount point");
}

fn tar(args: &[&str]) {
    let out = Command::new("tar").args(args).output().expect("tar");
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every entry under `root` (relative path -> type, mode, size, link target); file contents are
/// compared separately, byte for byte.
fn entries(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let t = m.file_type();
            let what = if t.is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).expect("readlink").display())
            } else if t.is_dir() {
                stack.push(p.clone());
                String::from("dir")
            } else if t.is_file() {
                format!("file size={}", m.size())
            } else {
                format!("other {:o}", m.mode())
            };
            let rel = p.strip_prefix(root).expect("under root").display().to_string();
            out.insert(rel, format!("{what} mode={:o}", m.permissions().mode() & 0o7777));
        }
    }
    out
}

fn compare_trees(kernel: &Path, fuse: &Path) -> Result<usize, String> {
    let (k, f) = (entries(kernel), entries(fuse));
    let mut problems = Vec::new();
    for (rel, kv) in &k {
        match f.get(rel) {
            None => problems.push(format!("only with the kernel driver: {rel} ({kv})")),
            Some(fv) if fv != kv => problems.push(format!("{rel}: kernel {kv}, fuse {fv}")),
            Some(_) if kv.starts_with("file ") => {
                let (a, b) = (std::fs::read(kernel.join(rel)), std::fs::read(fuse.join(rel)));
                match (a, b) {
                    (Ok(a), Ok(b)) if a == b => {}
                    (Ok(a), Ok(b)) => {
                        let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                        problems.push(format!("{rel}: contents differ from byte {at}"));
                    }
                    (a, b) => problems.push(format!("{rel}: read kernel {:?} fuse {:?}", a.err(), b.err())),
                }
            }
            Some(_) => {}
        }
    }
    problems.extend(f.keys().filter(|r| !k.contains_key(*r)).map(|r| format!("only with the fuse driver: {r}")));
    if problems.is_empty() {
        Ok(k.len())
    } else {
        problems.truncate(30);
        Err(problems.join("\n"))
    }
}

fn run_workload(driver: &str, rootfs: &Path, input: &Path, state: &Path) -> Duration {
    let vol_in = format!("{}:/in:ro", input.display());
    let up = state.display().to_string();
    let args = ["--overlay-driver", driver, "--upper", &up, "-v", "/usr:/usr:ro", "-v", &vol_in];
    let mut cmd = run_in(rootfs, &args, &["/usr/bin/bash", "/in/work.sh"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let start = Instant::now();
    let child = Reaped(cmd.spawn().expect("start burrow"));
    let o = wait_output(child.take(), Duration::from_secs(240));
    let took = start.elapsed();
    let log = |name: &str| std::fs::read_to_string(state.join("upper/build").join(name)).unwrap_or_default();
    assert_eq!(
        code(&o),
        0,
        "workload with --overlay-driver {driver} failed\n--- stdout\n{}\n--- stderr\n{}\n--- make1.log\n{}\n--- make2.log\n{}",
        stdout(&o),
        stderr(&o),
        log("make1.log"),
        log("make2.log")
    );
    took
}

fn host_tools_missing() -> Option<String> {
    for tool in ["gcc", "make", "ar", "tar"] {
        let ok = Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
        if !ok {
            return Some(format!("{tool} is not installed (scripts/ci-setup.sh installs gcc, make, binutils, tar)"));
        }
    }
    (!Path::new(TREE).is_dir()).then(|| format!("{TREE} is missing (package perl-modules)"))
}

#[test]
fn build_on_the_fuse_overlay_matches_the_kernel_overlay_byte_for_byte() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_err() {
        skip!("/dev/fuse is not usable (scripts/ci-setup.sh makes it 0666)");
    }
    if let Some(reason) = host_tools_missing() {
        skip!("{reason}");
    }
    let tmp = tempdir();
    let rootfs = tmp.path().join("rootfs");
    mk_rootfs(&rootfs);
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("input dir");
    project::write_project(tmp.path()).expect("generate the C project");
    let tree_parent = Path::new(TREE).parent().expect("has a parent").display().to_string();
    let tree_name = Path::new(TREE).file_name().expect("has a name").to_string_lossy().into_owned();
    let tree_tar = input.join("tree.tar.gz").display().to_string();
    tar(&["-czf", &tree_tar, "-C", &tree_parent, "--transform", &format!("s,^{tree_name},tree,"), &tree_name]);
    let proj_tar = input.join("proj.tar.gz").display().to_string();
    tar(&["-czf", &proj_tar, "-C", &tmp.path().display().to_string(), "proj"]);
    std::fs::write(input.join("work.sh"), project::SCRIPT).expect("work.sh");
    let before = entries(&rootfs);

    let mut uppers: Vec<PathBuf> = Vec::new();
    for driver in ["kernel", "fuse"] {
        let state = tmp.path().join(format!("state-{driver}"));
        let took = run_workload(driver, &rootfs, &input, &state);
        println!(
            "--overlay-driver {driver}: workload took {:.1} s (a loaded machine: not a benchmark)",
            took.as_secs_f64()
        );
        uppers.push(state.join("upper/build"));
    }
    let n = compare_trees(&uppers[0], &uppers[1]).unwrap_or_else(|e| panic!("the two drivers' /build differ:\n{e}"));
    println!("{n} entries equal byte for byte");

    let out = std::fs::read_to_string(uppers[1].join("prog.out")).expect("prog.out");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() == 8 && lines[..4] == lines[4..], "the program's output (built, then rebuilt): {out:?}");
    let rebuilt = std::fs::read_to_string(uppers[1].join("make2.log")).unwrap_or_default();
    let compiles = rebuilt.lines().filter(|l| l.starts_with("gcc ") && l.contains(" -c ")).count();
    assert_eq!(compiles, project::UNITS + 1, "after the header changed, make rebuilt:\n{rebuilt}");
    let left = std::fs::read_to_string(uppers[1].join("tmp.count")).unwrap_or_default();
    assert_eq!(left.trim(), "0", "temporary files left in $TMPDIR");
    assert_eq!(entries(&rootfs), before, "the workload changed the rootfs");
}

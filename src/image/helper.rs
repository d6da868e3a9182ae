//! Layer work inside a user namespace mapped like the containers' (`idmap::plan` in auto mode): extracting a
//! layer, and removing one (its files may belong to subordinate IDs, which the user cannot remove from the
//! host side, exactly like `podman unshare rm`).
//!
//! The helper is burrow itself (`burrow __layer-helper ACTION PATH...`), started with `std::process::Command`,
//! so that a multi-threaded caller (a pull downloading layers in parallel) never forks by hand: the fresh
//! process is single-threaded and may `unshare(CLONE_NEWUSER)`. The handshake, over its stdin and stdout:
//!
//! ```text
//! caller                                    helper
//!   spawn ─────────────────────────────────▶ unshare(CLONE_NEWUSER)
//!   ◀──────────────────────────── "unshared\n"
//!   newuidmap/newgidmap on its pid ('M'), or
//!   nothing ('S': it writes a single-ID map itself)
//!   ── 'M' | 'S' ──────────────────────────▶ now root of the namespace
//!   ── the decompressed tar (extract) ─────▶ extract::extract, then drain stdin
//!   ◀──────────────────── one JSON line: the report, or the error
//! ```

use super::extract::{self, Options, Report};
use crate::idmap::{self, IdPlan, UsernsMode};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start the layer helper {exe}: {source}")]
    Spawn { exe: PathBuf, source: io::Error },
    #[error("layer helper: {0}")]
    Failed(String),
    #[error("layer helper: mapping its user namespace: {0}")]
    Idmap(#[from] idmap::IdmapError),
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    #[error("reading the layer: {0}")]
    Read(io::Error),
}

/// The single hidden subcommand's name.
pub const SUBCOMMAND: &str = "__layer-helper";

/// How layers are extracted and removed.
#[derive(Clone, Debug)]
pub enum Helper {
    /// In a user namespace, through `exe __layer-helper` (burrow itself).
    Userns { exe: PathBuf, plan: IdPlan },
    /// In this process, as this user, without owners (unit tests, and stores used without the burrow binary).
    InProcess,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Outcome {
    Done(Report),
    Failed(String),
}

impl Helper {
    /// The helper for this user: burrow's own binary, the maps `burrow run` would use.
    pub fn for_caller(warn: &mut dyn FnMut(String)) -> Result<Helper, HelperError> {
        let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let plan = idmap::plan(UsernsMode::Auto, &crate::run::caller(), warn)?;
        Ok(Helper::Userns { exe, plan })
    }

    /// Whether extracted files keep their owners (false: a single-ID map, everything is the user's own).
    pub fn keeps_owners(&self) -> bool {
        matches!(self, Helper::Userns { plan, .. } if plan.via_helpers)
    }

    /// Extracts the tar read from `tar` into the existing, empty directory `dir`.
    pub fn extract(&self, dir: &Path, tar: &mut dyn Read) -> Result<Report, HelperError> {
        match self {
            Helper::InProcess => {
                let root = std::fs::File::open(dir).map_err(HelperError::Read)?;
                let opts = Options { chown: false, ..Options::default() };
                let report = extract::extract(&mut *tar, root.as_fd(), &opts)?;
                io::copy(tar, &mut io::sink()).map_err(HelperError::Read)?;
                Ok(report)
            }
            Helper::Userns { exe, plan } => {
                let (mut child, mut stdin, stdout) = start(exe, plan, "extract", &[dir])?;
                let copied = io::copy(tar, &mut stdin);
                drop(stdin);
                let outcome = finish(&mut child, stdout);
                match (copied, outcome) {
                    // The helper's own error explains a broken pipe better than the pipe does.
                    (_, Err(e)) => Err(e),
                    (Err(e), Ok(_)) => Err(HelperError::Read(e)),
                    (Ok(_), Ok(report)) => Ok(report),
                }
            }
        }
    }

    /// Removes whole trees (layers, interrupted extractions).
    pub fn remove(&self, paths: &[&Path]) -> Result<(), HelperError> {
        let paths: Vec<&Path> = paths.iter().copied().filter(|p| p.symlink_metadata().is_ok()).collect();
        if paths.is_empty() {
            return Ok(());
        }
        match self {
            Helper::InProcess => {
                for p in paths {
                    remove_tree(p).map_err(HelperError::Failed)?;
                }
                Ok(())
            }
            Helper::Userns { exe, plan } => {
                let (mut child, stdin, stdout) = start(exe, plan, "remove", &paths)?;
                drop(stdin);
                finish(&mut child, stdout).map(|_| ())
            }
        }
    }
}

fn start(
    exe: &Path,
    plan: &IdPlan,
    action: &str,
    paths: &[&Path],
) -> Result<(Child, std::process::ChildStdin, BufReader<std::process::ChildStdout>), HelperError> {
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(action)
        .args(paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HelperError::Spawn { exe: exe.to_path_buf(), source })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    if line != "unshared\n" {
        return Err(finish(&mut child, stdout).err().unwrap_or(HelperError::Failed("no handshake".into())));
    }
    let pid = child.id() as i32;
    let answer = if plan.via_helpers {
        match idmap::start_helpers(plan, pid).finish() {
            Ok(()) => b'M',
            // Nothing written yet: the single-ID map still works (every file becomes the user's own).
            Err(_) if std::fs::read_to_string(format!("/proc/{pid}/uid_map")).is_ok_and(|m| m.trim().is_empty()) => {
                b'S'
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        }
    } else {
        b'S'
    };
    if stdin.write_all(&[answer]).is_err() {
        return Err(finish(&mut child, stdout).err().unwrap_or(HelperError::Failed("exited early".into())));
    }
    Ok((child, stdin, stdout))
}

fn finish(child: &mut Child, mut stdout: BufReader<std::process::ChildStdout>) -> Result<Report, HelperError> {
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(HelperError::Read)?;
    match out.lines().last().and_then(|l| serde_json::from_str::<Outcome>(l).ok()) {
        Some(Outcome::Done(report)) if status.success() => Ok(report),
        Some(Outcome::Failed(message)) => Err(HelperError::Failed(message)),
        _ => Err(HelperError::Failed(format!("exited with {status}: {}", err.trim()))),
    }
}

fn remove_tree(p: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", p.display())),
    }
}

/// The helper process itself (`burrow __layer-helper extract DIR` / `remove PATH...`). Prints one JSON line.
pub fn main(args: &[String]) -> i32 {
    let outcome = match serve(args) {
        Ok(report) => Outcome::Done(report),
        Err(message) => Outcome::Failed(message),
    };
    let ok = matches!(outcome, Outcome::Done(_));
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(&outcome).unwrap_or_default());
    let _ = out.flush();
    if ok {
        0
    } else {
        1
    }
}

fn serve(args: &[String]) -> Result<Report, String> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e} (see `burrow doctor`)"))?;
    {
        let mut out = io::stdout().lock();
        out.write_all(b"unshared\n").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    }
    let mut stdin = io::stdin().lock();
    let mut answer = [0u8; 1];
    stdin.read_exact(&mut answer).map_err(|e| format!("no answer from burrow: {e}"))?;
    if answer[0] == b'S' {
        let write = |f: &str, s: String| std::fs::write(f, s).map_err(|e| format!("write {f}: {e}"));
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
        write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    }
    match args {
        [action, dir] if action == "extract" => {
            let root = std::fs::File::open(dir).map_err(|e| format!("open {dir}: {e}"))?;
            let opts = Options { chown: answer[0] == b'M', ..Options::default() };
            let report = extract::extract(&mut stdin, root.as_fd(), &opts).map_err(|e| e.to_string())?;
            // The compressed stream's tail (tar padding) must be read for its digest to be checked.
            let _ = io::copy(&mut stdin, &mut io::sink());
            Ok(report)
        }
        [action, paths @ ..] if action == "remove" => {
            for p in paths {
                remove_tree(Path::new(p))?;
            }
            Ok(Report::default())
        }
        _ => Err(format!("unknown arguments {args:?}")),
    }
}

//! The record of a registered container: `BASE/containers/ID/` (BASE from [`crate::state::base_dir`]).
//!
//! | file          | written by            | meaning |
//! |---------------|-----------------------|---------|
//! | `config.json` | `run -d`, once        | name, command, root, ports, created, boot id |
//! | `lock`        | `run -d`              | flock'ed by the monitor and inherited by every process of the container: held = running |
//! | `ops.lock`    | stop, kill, rm        | flock'ed while a command acts on the container (one at a time) |
//! | `state.json`  | the runner, at start  | host pids (and start times) of the monitor and of the container's init |
//! | `exit.json`   | the monitor, at end   | exit code and time |
//! | `log`, `log.1`| the monitor           | what the payload wrote (stdout and stderr), size-capped, one rotation |
//! | `ctl`         | the container's init  | its control socket (`burrow exec`) |
//!
//! Every file is written whole and renamed into place, so readers (`ps` from another shell) never see half
//! of one. A record whose lock nobody holds is a container that ended; without `exit.json` its monitor was
//! killed (or the machine rebooted: the boot id differs), and its exit code is unknown.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: malformed: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{text:?} names more than one container ({ids}): give more of the ID")]
    Ambiguous { text: String, ids: String },
    #[error("the name {0:?} is already in use by container {1}: choose another, or burrow rm it")]
    NameInUse(String, String),
    #[error("invalid name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    BadName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io { path: path.to_path_buf(), source }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub id: String,
    pub name: Option<String>,
    /// The image, the --rootfs directory, or "host" (the host-root default).
    pub root: String,
    pub command: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub ports: Vec<String>,
    pub boot_id: String,
    /// `--rm`: the monitor removes the record when the container ends.
    pub remove: bool,
    pub terminal: bool,
    /// The container has burrow's init, which serves `exec` (not with --no-init).
    pub has_init: bool,
    /// A named foreground run: registered only while it runs (no log, no exit code kept).
    #[serde(default)]
    pub foreground: bool,
}

impl Config {
    /// The record of the `prepared` run of `args`: detached (`remove` as `--rm` asks) or a named foreground run
    /// (`foreground`, always removed when it ends). Its root is the image's full reference, the --rootfs
    /// directory or "host"; its ports are the host ports really bound (`-P`'s as the kernel chose them).
    pub fn of_run(prepared: &crate::run::Prepared, args: &crate::cli::RunArgs, foreground: bool) -> Config {
        let root = match (&prepared.image, &args.rootfs) {
            (Some(image), _) => image.reference.to_string(),
            (None, Some(dir)) => dir.display().to_string(),
            (None, None) => "host".into(),
        };
        Config {
            id: prepared.id.clone(),
            name: args.name.clone(),
            root,
            command: prepared.spec.command.clone(),
            created: now(),
            ports: prepared.spec.net.published().iter().map(|p| p.to_string()).collect(),
            boot_id: boot_id(),
            remove: foreground || args.rm,
            terminal: args.tty,
            has_init: !args.no_init,
            foreground,
        }
    }
}

/// Host pids, with their start times (field 22 of /proc/PID/stat) so that a reused pid is never signalled.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Started {
    pub monitor: i32,
    pub monitor_start: u64,
    pub init: i32,
    pub init_start: u64,
    /// Seconds since the epoch.
    pub at: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub finished: u64,
}

/// What `ps` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Registered, its payload not yet started.
    Created,
    Running,
    Exited(Option<i32>),
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This boot's id (differs after a reboot: no process of an older boot is alive).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Where the records are.
pub fn root() -> Result<PathBuf, RecordError> {
    let dir = crate::state::base_dir()?.join("containers");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(&dir)(e)),
        _ => Ok(dir),
    }
}

/// One record on disk.
#[derive(Clone, Debug)]
pub struct Record {
    pub dir: PathBuf,
    pub config: Config,
}

impl Record {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn load(dir: &Path) -> Result<Record, RecordError> {
        let config = read_json(&dir.join("config.json"))?;
        Ok(Record { dir: dir.to_path_buf(), config })
    }

    pub fn started(&self) -> Option<Started> {
        read_json(&self.file("state.json")).ok()
    }

    pub fn exit(&self) -> Option<Exit> {
        read_json(&self.file("exit.json")).ok()
    }

    /// Held (by a live process of the container) or not; a probe that takes the lock lets it go at once.
    pub fn running(&self) -> bool {
        if self.config.boot_id != boot_id() {
            return false;
        }
        let Ok(file) = std::fs::File::open(self.file("lock")) else { return false };
        matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, nix::Error::EWOULDBLOCK)))
    }

    pub fn status(&self) -> Status {
        if self.running() {
            return match self.started() {
                Some(_) => Status::Running,
                None => Status::Created,
            };
        }
        Status::Exited(self.exit().map(|e| e.code))
    }

    /// Blocks until no process of the container holds its lock.
    /// Waits until no process of the container holds its lock, then returns its exit: from `exit.json` (the
    /// monitor of a detached container writes it), else from the lock file itself, which a named foreground
    /// run fills with its exit before it lets the lock go and removes its record (this descriptor keeps the
    /// removed file readable).
    pub fn wait_ended(&self) -> Option<Exit> {
        if self.config.boot_id != boot_id() {
            return self.exit();
        }
        let Ok(file) = std::fs::File::open(self.file("lock")) else { return self.exit() };
        let Ok(held) = Flock::lock(file, FlockArg::LockShared) else { return self.exit() };
        self.exit().or_else(|| serde_json::from_reader::<_, Exit>(&*held).ok())
    }

    /// Takes the container's operations lock (stop, kill, rm act one at a time).
    pub fn lock_ops(&self) -> Result<Flock<std::fs::File>, RecordError> {
        let path = self.file("ops.lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.kind() {
                // Removed by another command meanwhile.
                std::io::ErrorKind::NotFound => RecordError::NotFound(self.config.id.clone()),
                _ => io(&path)(e),
            })?;
        let held = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(&path)(e.into()))?;
        // The previous holder may have removed the record (rm) while we waited.
        if !self.dir.exists() {
            return Err(RecordError::NotFound(self.config.id.clone()));
        }
        Ok(held)
    }

    pub fn display_name(&self) -> &str {
        self.config.name.as_deref().unwrap_or("")
    }
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| RecordError::Json { path: path.to_path_buf(), source })
}

/// Writes `value` to `path` whole: a temporary file renamed into place.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(io(path))
}

/// Every record, oldest first (unreadable ones, e.g. half-removed, are left out). A foreground run's record
/// whose lock nobody holds was left by a run killed before it could remove it: it is removed here.
pub fn list() -> Result<Vec<Record>, RecordError> {
    let root = root()?;
    let mut all: Vec<Record> = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| !n.starts_with('.')))
        .filter_map(|e| Record::load(&e.path()).ok())
        .filter(|r| !(r.config.foreground && !r.running() && remove(r).is_ok()))
        .collect();
    all.sort_by(|a, b| (a.config.created, &a.config.id).cmp(&(b.config.created, &b.config.id)));
    Ok(all)
}

/// Finds a container by exact name, exact ID, or unique ID prefix (podman's rules).
pub fn find(text: &str) -> Result<Record, RecordError> {
    let all = list()?;
    if let Some(r) = all.iter().find(|r| r.config.name.as_deref() == Some(text) || r.config.id == text) {
        return Ok(r.clone());
    }
    let matches: Vec<&Record> = all.iter().filter(|r| !text.is_empty() && r.config.id.starts_with(text)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RecordError::NotFound(text.to_string())),
        many => Err(RecordError::Ambiguous {
            text: text.into(),
            ids: many.iter().map(|r| r.config.id.as_str()).collect::<Vec<_>>().join(", "),
        }),
    }
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

/// A record being created: its directory under a temporary name, and the container's lock, taken before
/// the record becomes visible (so that nobody ever sees it unlocked while it starts).
pub struct NewRecord {
    pub record: Record,
    pub lock: std::fs::File,
}

/// Creates the record of a new container: checks that its name is free (under the records' lock, so two
/// runs cannot both take one name), locks it, and renames it into place.
pub fn create(config: Config) -> Result<NewRecord, RecordError> {
    if let Some(name) = &config.name {
        if !valid_name(name) {
            return Err(RecordError::BadName(name.clone()));
        }
    }
    let root = root()?;
    let names = root.join(".names.lock");
    let guard = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&names)
        .map_err(io(&names))?;
    let _guard = Flock::lock(guard, FlockArg::LockExclusive).map_err(|(_, e)| io(&names)(e.into()))?;
    if let Some(name) = &config.name {
        if let Some(other) = list()?.into_iter().find(|r| r.config.name.as_deref() == Some(name)) {
            return Err(RecordError::NameInUse(name.clone(), other.config.id));
        }
    }
    let tmp = root.join(format!(".new-{}", config.id));
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io(&tmp))?;
    let lock_path = tmp.join("lock");
    let made = (|| {
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        // Not through Flock: its drop unlocks, and the lock must outlive this process in its children.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io(&lock_path)(e.into()))?;
        write_json(&tmp.join("config.json"), &config)?;
        let dir = root.join(&config.id);
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        Ok(NewRecord { record: Record { dir, config: config.clone() }, lock })
    })();
    if made.is_err() {
        crate::state::remove_tree(&tmp);
    }
    made
}

/// Writes the exit of a run into its lock file (see [`Record::wait_ended`]).
pub fn write_exit_to_lock(lock: &std::fs::File, exit: &Exit) {
    use std::os::unix::fs::FileExt;
    if let Ok(bytes) = serde_json::to_vec(exit) {
        let _ = lock.write_all_at(&bytes, 0);
    }
}

/// Removes a record: renamed out of sight first, so `ps` never lists half of one.
pub fn remove(record: &Record) -> Result<(), RecordError> {
    let gone = record.dir.with_file_name(format!(".rm-{}", record.config.id));
    std::fs::rename(&record.dir, &gone).map_err(io(&record.dir))?;
    crate::state::remove_tree(&gone);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_boot_is_not_running_even_if_its_lock_is_held() {
        let t = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(t.path().join("lock")).unwrap();
        let _held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();
        let mut r = Record { dir: t.path().to_path_buf(), config: Config { boot_id: boot_id(), ..Config::default() } };
        assert!(r.running());
        r.config.boot_id = "an-older-boot".into();
        assert!(!r.running());
        assert_eq!(r.status(), Status::Exited(None));
    }

    #[test]
    fn names_follow_podman_rules() {
        for ok in ["web", "a", "db-1", "x_y.z", "9lives"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

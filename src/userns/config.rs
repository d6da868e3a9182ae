//! Whether a user-namespace keeper may run, and for how long it waits idle: the system's policy file, the
//! user's config file, the environment and the command line, in that order of authority.
//!
//! ```toml
//! # /etc/burrow/config.toml (the administrator's policy) or $XDG_CONFIG_HOME/burrow/config.toml
//! [userns]
//! keeper = false      # never leave a keeper process behind (default true)
//! keeper_idle = 600   # seconds a keeper waits for the next run before it exits (default 600)
//! ```
//!
//! `keeper = false` in the system file cannot be overridden. Otherwise `--userns-keeper` (or
//! `BURROW_USERNS_KEEPER`) decides for one run, else the user's file; `BURROW_KEEPER_IDLE` overrides the idle
//! time. A running keeper re-reads the system file (at least once a minute) and exits once it forbids keepers;
//! a run whose user file says `keeper = false` stops a running keeper.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The administrator's policy file.
pub const SYSTEM_CONFIG: &str = "/etc/burrow/config.toml";
const DEFAULT_IDLE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message} (fix or remove it)")]
    Invalid { path: PathBuf, message: String },
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("BURROW_KEEPER_IDLE={0:?}: expected a number of seconds")]
    Idle(String),
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsernsSection {
    keeper: Option<bool>,
    keeper_idle: Option<u64>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    userns: UsernsSection,
}

/// What the files allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A keeper may be used and started by this run.
    pub enabled: bool,
    /// Why not, when a file forbids it (a running keeper must then be stopped, not just left unused).
    pub forbidden_by: Option<PathBuf>,
    /// How long a keeper waits for a client before it exits.
    pub idle: Duration,
}

/// The user's config file: `$XDG_CONFIG_HOME/burrow/config.toml`, else `~/.config/burrow/config.toml`.
pub fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("burrow/config.toml"))
}

fn read(path: &Path) -> Result<UsernsSection, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UsernsSection::default()),
        Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
    };
    parse(&text).map_err(|message| ConfigError::Invalid { path: path.into(), message })
}

fn parse(text: &str) -> Result<UsernsSection, String> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    Ok(file.userns)
}

/// Decides from the files, `flag` (`--userns-keeper`, None when not given) and `env_idle`
/// (`BURROW_KEEPER_IDLE`).
pub fn policy(
    system: &Path,
    user: Option<&Path>,
    flag: Option<bool>,
    env_idle: Option<&str>,
) -> Result<Policy, ConfigError> {
    let sys = read(system)?;
    let usr = match user {
        Some(p) => read(p)?,
        None => UsernsSection::default(),
    };
    let forbidden_by = if sys.keeper == Some(false) {
        Some(system.to_path_buf())
    } else if flag.is_none() && usr.keeper == Some(false) {
        user.map(Path::to_path_buf)
    } else {
        None
    };
    let enabled = forbidden_by.is_none() && flag.unwrap_or(true);
    let idle = match env_idle {
        Some(v) => Duration::from_secs(v.trim().parse().map_err(|_| ConfigError::Idle(v.into()))?),
        None => usr.keeper_idle.or(sys.keeper_idle).map(Duration::from_secs).unwrap_or(DEFAULT_IDLE),
    };
    Ok(Policy { enabled, forbidden_by, idle })
}

/// What a running keeper checks while it waits: does the system's policy forbid it now? (An unreadable or
/// broken file counts as a refusal: the keeper is only an optimisation.) The user's own file is applied by the
/// next run, which stops the keeper when the file says `keeper = false`.
pub fn forbids(system: &Path) -> bool {
    read(system).map_or(true, |s| s.keeper == Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(system: &str, user: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (s, u) = (t.path().join("system.toml"), t.path().join("user.toml"));
        std::fs::write(&s, system).unwrap();
        std::fs::write(&u, user).unwrap();
        (t, s, u)
    }

    #[test]
    fn defaults_without_files() {
        let p = policy(Path::new("/nonexistent/a"), Some(Path::new("/nonexistent/b")), None, None).unwrap();
        assert!(p.enabled && p.forbidden_by.is_none());
        assert_eq!(p.idle, Duration::from_secs(600));
    }

    #[test]
    fn the_system_policy_wins_over_the_flag_and_the_user() {
        let (_t, s, u) = files("[userns]\nkeeper = false\n", "[userns]\nkeeper = true\n");
        let p = policy(&s, Some(&u), Some(true), None).unwrap();
        assert!(!p.enabled);
        assert_eq!(p.forbidden_by.as_deref(), Some(s.as_path()));
        assert!(forbids(&s));
        assert!(!forbids(&u));
    }

    #[test]
    fn the_flag_decides_for_one_run_over_the_users_file() {
        let (_t, s, u) = files("", "[userns]\nkeeper = false\nkeeper_idle = 5\n");
        let off = policy(&s, Some(&u), None, None).unwrap();
        assert!(!off.enabled && off.forbidden_by.as_deref() == Some(u.as_path()));
        assert_eq!(off.idle, Duration::from_secs(5));
        let on = policy(&s, Some(&u), Some(true), Some("7")).unwrap();
        assert!(on.enabled && on.forbidden_by.is_none());
        assert_eq!(on.idle, Duration::from_secs(7));
        let flag_off = policy(Path::new("/nonexistent"), None, Some(false), None).unwrap();
        assert!(!flag_off.enabled && flag_off.forbidden_by.is_none(), "the flag alone stops nothing");
    }

    #[test]
    fn broken_files_and_values_are_errors_that_name_the_file() {
        let (_t, s, u) = files("[userns]\nkeeper = \"no\"\n", "[userns]\nkeepr = false\n");
        let e = policy(&s, None, None, None).unwrap_err().to_string();
        assert!(e.contains("system.toml") && e.contains("fix or remove"), "{e}");
        let e = policy(Path::new("/nonexistent"), Some(&u), None, None).unwrap_err().to_string();
        assert!(e.contains("user.toml") && e.contains("keepr"), "{e}");
        assert!(forbids(&s), "a broken policy file stops a running keeper");
        assert!(!forbids(Path::new("/nonexistent")));
        let e = policy(Path::new("/nonexistent"), None, None, Some("ten")).unwrap_err().to_string();
        assert!(e.contains("BURROW_KEEPER_IDLE"), "{e}");
    }

    #[test]
    fn other_sections_are_left_to_their_readers() {
        let (_t, s, _u) = files("[network]\nmode = \"pasta\"\n[userns]\nkeeper = true\n", "");
        assert!(policy(&s, None, None, None).unwrap().enabled);
    }
}

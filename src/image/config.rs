//! An image's run configuration (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts) and how the command
//! line overrides it, with docker's rules: CMD replaces Cmd; `--entrypoint` replaces Entrypoint and drops the
//! image's Cmd; `-e` overrides Env by name; `-w` and `-u` replace WorkingDir and User.

use super::store::Image;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("image {0} has no Entrypoint or Cmd: give a command (burrow run IMAGE CMD...)")]
    NoCommand(String),
    #[error("image {image}: WorkingDir {dir:?} is not an absolute path")]
    Workdir { image: String, dir: String },
}

/// What the image contributes to a run, before the command line overrides it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    /// `PORT/PROTO` as the image lists them.
    pub exposed_ports: Vec<String>,
    /// The layers' root directories, top-most first (the overlay's `lowerdir` order).
    pub lowers: Vec<PathBuf>,
}

impl Defaults {
    pub fn of(image: &Image) -> Result<Defaults, ConfigError> {
        let name = image.reference.familiar();
        let mut d = Defaults { name: name.clone(), ..Defaults::default() };
        d.lowers = image.layers.iter().rev().cloned().collect();
        let Some(c) = image.config.config() else { return Ok(d) };
        d.entrypoint = c.entrypoint().clone().unwrap_or_default();
        d.cmd = c.cmd().clone().unwrap_or_default();
        d.env = c
            .env()
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        d.workdir = match c.working_dir().as_deref() {
            None | Some("") => None,
            Some(w) if w.starts_with('/') => Some(PathBuf::from(w)),
            Some(w) => return Err(ConfigError::Workdir { image: name, dir: w.into() }),
        };
        d.user = c.user().clone().filter(|u| !u.is_empty());
        d.exposed_ports = c.exposed_ports().clone().unwrap_or_default();
        d.exposed_ports.sort();
        Ok(d)
    }

    /// The command to run: `entrypoint` (`--entrypoint`; `Some("")` clears the image's) followed by `args`
    /// (the CMD of the command line), each replacing the image's value when given.
    pub fn command(&self, entrypoint: Option<&str>, args: &[String]) -> Result<Vec<String>, ConfigError> {
        let (entry, default_cmd) = match entrypoint {
            None => (self.entrypoint.clone(), self.cmd.clone()),
            Some("") => (vec![], vec![]),
            Some(e) => (parse_entrypoint(e), vec![]),
        };
        let cmd = if args.is_empty() { default_cmd } else { args.to_vec() };
        let all: Vec<String> = entry.into_iter().chain(cmd).collect();
        if all.is_empty() {
            return Err(ConfigError::NoCommand(self.name.clone()));
        }
        Ok(all)
    }
}

/// `--entrypoint` takes one program, or (as podman) a JSON array of strings.
fn parse_entrypoint(e: &str) -> Vec<String> {
    if e.trim_start().starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(e) {
            return v;
        }
    }
    vec![e.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(entry: &[&str], cmd: &[&str]) -> Defaults {
        Defaults {
            name: "app:1".into(),
            entrypoint: entry.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Defaults::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_rules_for_entrypoint_and_cmd() {
        let d = defaults(&["/entry", "-x"], &["serve", "--port=80"]);
        assert_eq!(d.command(None, &[]).unwrap(), v(&["/entry", "-x", "serve", "--port=80"]));
        assert_eq!(d.command(None, &v(&["sh"])).unwrap(), v(&["/entry", "-x", "sh"]));
        // --entrypoint drops the image's Cmd too.
        assert_eq!(d.command(Some("/bin/true"), &[]).unwrap(), v(&["/bin/true"]));
        assert_eq!(d.command(Some("/bin/echo"), &v(&["a"])).unwrap(), v(&["/bin/echo", "a"]));
        assert_eq!(d.command(Some(r#"["/bin/sh","-c"]"#), &v(&["echo hi"])).unwrap(), v(&["/bin/sh", "-c", "echo hi"]));
        assert_eq!(d.command(Some(""), &v(&["ls"])).unwrap(), v(&["ls"]));
        assert_eq!(d.command(Some(""), &[]), Err(ConfigError::NoCommand("app:1".into())));
        let only_cmd = defaults(&[], &["/bin/sh"]);
        assert_eq!(only_cmd.command(None, &[]).unwrap(), v(&["/bin/sh"]));
        assert_eq!(only_cmd.command(None, &v(&["id"])).unwrap(), v(&["id"]));
        let e = defaults(&[], &[]).command(None, &[]).unwrap_err().to_string();
        assert!(e.contains("no Entrypoint or Cmd") && e.contains("app:1"), "{e}");
    }
}

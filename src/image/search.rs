//! Short names and podman's search registries: `unqualified-search-registries` of containers-registries.conf(5).
//!
//! A short name (no registry: `app:1`, `team/app`) is tried in each search registry in order, as podman does
//! without a terminal to ask on: the first registry that has the image wins. Without search registries (no
//! file, or no such key), a short name means docker.io, docker's rule. The file is podman's:
//! `$CONTAINERS_REGISTRIES_CONF` if set, else `$XDG_CONFIG_HOME/containers/registries.conf` (default
//! `~/.config/containers/registries.conf`) if it exists, else `/etc/containers/registries.conf`; the v2 key
//! `unqualified-search-registries = [...]`, or the v1 table `[registries.search] registries = [...]`. Not read:
//! `registries.conf.d` drop-ins, aliases (`[aliases]`, short-name-aliases.conf), `short-name-mode`, mirrors.

use super::reference::{RefError, Reference, DEFAULT_REGISTRY};
use std::path::{Path, PathBuf};

pub const SYSTEM_FILE: &str = "/etc/containers/registries.conf";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SearchError {
    #[error("{path}: {reason} (see containers-registries.conf(5); fix or remove the file)")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    Reference(#[from] RefError),
}

/// The search registries in effect, and the file that set them (None: docker.io only, no file says otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    pub registries: Vec<String>,
    pub file: Option<PathBuf>,
}

#[derive(serde::Deserialize, Default)]
struct File {
    #[serde(rename = "unqualified-search-registries")]
    unqualified: Option<Vec<String>>,
    registries: Option<V1>,
}

#[derive(serde::Deserialize, Default)]
struct V1 {
    search: Option<V1List>,
}

#[derive(serde::Deserialize, Default)]
struct V1List {
    registries: Option<Vec<String>>,
}

/// podman's file for this user (see the module comment); None when none exists.
pub fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let user = base.map(|b| b.join("containers/registries.conf")).filter(|p| p.exists());
    user.or_else(|| Some(PathBuf::from(SYSTEM_FILE)).filter(|p| p.exists()))
}

impl Search {
    /// The search registries of this user's file (see the module comment).
    pub fn load() -> Result<Search, SearchError> {
        match config_file() {
            Some(path) => Search::from_file(&path),
            None => Ok(Search::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Search, SearchError> {
        let bad = |reason: String| SearchError::Config { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let parsed: File = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        let v1 = parsed.registries.and_then(|r| r.search).and_then(|s| s.registries);
        let registries = parsed.unqualified.or(v1).unwrap_or_default();
        for r in &registries {
            if qualify("x", r).is_err() {
                return Err(bad(format!("search registry {r:?} is not a registry host (HOST or HOST:PORT)")));
            }
        }
        Ok(Search { registries, file: Some(path.to_path_buf()) })
    }

    /// The references to try for `text`, in order: one for a fully qualified name or without search registries;
    /// one per search registry for a short name.
    pub fn candidates(&self, text: &str) -> Result<Vec<Reference>, SearchError> {
        if !is_short(text) || self.registries.is_empty() {
            return Ok(vec![Reference::parse(text)?]);
        }
        // A short name must be valid by itself first (its error then names what the user typed).
        Reference::parse(text)?;
        Ok(self.registries.iter().map(|r| qualify(text, r)).collect::<Result<_, _>>()?)
    }

    /// Whether a short name is resolved through search registries (more than docker.io's default).
    pub fn applies_to(&self, text: &str) -> bool {
        is_short(text) && !self.registries.is_empty()
    }
}

/// A name without a registry: its first `/`-component does not look like a host (docker's rule, as in
/// [`Reference::parse`]), and it is not spelled with `docker.io/` either.
pub fn is_short(text: &str) -> bool {
    let name = text.split('@').next().unwrap_or(text);
    match name.split_once('/') {
        Some((first, _)) => !(first.contains('.') || first.contains(':') || first == "localhost"),
        None => true,
    }
}

/// `text` (a short name) in `registry`: `app:1` in `quay.io` is `quay.io/app:1` (no `library/` but on docker.io).
fn qualify(text: &str, registry: &str) -> Result<Reference, RefError> {
    let r = Reference::parse(&format!("{registry}/{text}"))?;
    let same = r.registry == registry || (registry == "index.docker.io" && r.registry == DEFAULT_REGISTRY);
    if !same {
        return Err(RefError::Invalid { reference: registry.into(), reason: "not a registry host" });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(regs: &[&str]) -> Search {
        Search { registries: regs.iter().map(|s| s.to_string()).collect(), file: None }
    }

    fn names(v: Vec<Reference>) -> Vec<String> {
        v.into_iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn short_names_go_to_each_search_registry_in_order() {
        let s = search(&["quay.io", "127.0.0.1:5000", "docker.io"]);
        assert_eq!(
            names(s.candidates("app:1").unwrap()),
            ["quay.io/app:1", "127.0.0.1:5000/app:1", "docker.io/library/app:1"]
        );
        assert_eq!(names(s.candidates("team/app").unwrap())[0], "quay.io/team/app:latest");
        // Qualified names are never searched.
        for full in ["quay.io/x/app:1", "localhost/app", "127.0.0.1:5000/app", "docker.io/app"] {
            assert_eq!(s.candidates(full).unwrap().len(), 1, "{full}");
            assert!(!s.applies_to(full));
        }
        // Without search registries: docker.io, as today.
        assert_eq!(names(search(&[]).candidates("app").unwrap()), ["docker.io/library/app:latest"]);
        assert!(matches!(s.candidates("Bad:Ref"), Err(SearchError::Reference(_))));
    }

    #[test]
    fn reads_podmans_v2_and_v1_files_and_rejects_bad_ones() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("registries.conf");
        std::fs::write(&f, "unqualified-search-registries = [\"a.example\", \"127.0.0.1:5000\"]\n[[registry]]\nlocation = \"a.example\"\ninsecure = true\n").unwrap();
        assert_eq!(Search::from_file(&f).unwrap().registries, ["a.example", "127.0.0.1:5000"]);
        std::fs::write(&f, "[registries.search]\nregistries = ['v1.example']\n").unwrap();
        assert_eq!(Search::from_file(&f).unwrap().registries, ["v1.example"]);
        std::fs::write(&f, "short-name-mode = \"enforcing\"\n").unwrap();
        assert!(Search::from_file(&f).unwrap().registries.is_empty());
        for bad in [
            "unqualified-search-registries = \"a.example\"\n",
            "unqualified-search-registries = [\"Not A Host\"]\n",
            "[[x\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = Search::from_file(&f).unwrap_err();
            assert!(
                e.to_string().contains("registries.conf") && e.to_string().contains("containers-registries.conf(5)"),
                "{e}"
            );
        }
    }
}

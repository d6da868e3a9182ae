//! `burrow login` and `burrow logout`: podman's commands, writing the auth file podman reads.

use super::authfile::{self, AuthFileError, AuthFiles, Credentials, Env};
use super::client::{Client, ClientOptions};
use super::RegistryError;
use crate::cli::{LoginArgs, LogoutArgs};
use std::io::{BufRead, IsTerminal, Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Usage(String),
    #[error("reading the {what}: {source}")]
    Input { what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    AuthFile(#[from] AuthFileError),
}

/// Checks the credentials against the registry (`GET /v2/`, through its token server if it has one), then
/// stores them. Returns the line to print.
pub fn login(args: &LoginArgs) -> Result<String, LoginError> {
    let key = authfile::normalize_key(&args.registry);
    let host = key.split('/').next().unwrap_or(&key).to_string();
    if host.is_empty() {
        return Err(LoginError::Usage("login: a registry is required, e.g. `burrow login quay.io`".into()));
    }
    let files = AuthFiles::locate(&Env::current(args.authfile.clone()))?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt("Username: ")?,
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => return Err(LoginError::Usage("login: --password and --password-stdin conflict".into())),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|source| LoginError::Input { what: "password", source })?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt_hidden("Password: ")?,
    };
    if username.is_empty() || username.contains(':') {
        return Err(LoginError::Usage("login: the user name must be non-empty and without ':'".into()));
    }
    if password.is_empty() {
        return Err(LoginError::Usage("login: empty password".into()));
    }
    let creds = Credentials { username, password };
    let opts = ClientOptions { tls_verify: args.tls_verify, ..ClientOptions::default() };
    Client::new(&host, "", Some(creds.clone()), opts).ping()?;
    let path = files.store(&key, &creds)?;
    let note = if path != files.primary { format!(" (stored in {})", path.display()) } else { String::new() };
    Ok(format!("Login Succeeded!{note}"))
}

/// Removes the credentials of one registry, or all (`--all`), from burrow's (and podman's) auth file.
pub fn logout(args: &LogoutArgs) -> Result<String, LoginError> {
    let files = AuthFiles::locate(&Env::current(args.authfile.clone()))?;
    let key = match (&args.registry, args.all) {
        (Some(_), true) => return Err(LoginError::Usage("logout: give a registry or --all, not both".into())),
        (None, false) => return Err(LoginError::Usage("logout: a registry (or --all) is required".into())),
        (Some(r), false) => Some(authfile::normalize_key(r)),
        (None, true) => None,
    };
    match files.remove(key.as_deref()) {
        Ok(_) if key.is_none() => Ok("Removed login credentials for all registries".into()),
        Ok(_) => Ok(format!("Removed login credentials for {}", key.unwrap_or_default())),
        Err(AuthFileError::NotLoggedIn { key, path }) => {
            let (host, repo) = key.split_once('/').unwrap_or((&key, ""));
            // Credentials from `docker login` live in docker's file, which burrow (like podman) never changes.
            if let Ok(Some((_, elsewhere))) = files.lookup(host, repo) {
                return Err(LoginError::Usage(format!(
                    "not logged in to {key} in {}; its credentials come from {}: remove them with the tool that \
                     wrote them (e.g. `docker logout {key}`)",
                    path.display(),
                    elsewhere.display()
                )));
            }
            Err(AuthFileError::NotLoggedIn { key, path }.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn prompt(label: &str) -> Result<String, LoginError> {
    if !std::io::stdin().is_terminal() {
        return Err(LoginError::Usage(
            "login: no terminal to ask for the user name: pass --username (and --password-stdin)".into(),
        ));
    }
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|source| LoginError::Input { what: "user name", source })?;
    Ok(line.trim().to_string())
}

/// Reads a line from the terminal with echo off (restored afterwards, also on error).
fn prompt_hidden(label: &str) -> Result<String, LoginError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(LoginError::Usage("login: no terminal to ask for the password: use --password-stdin".into()));
    }
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| LoginError::Input { what: "password", source: e.into() })?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(|source| LoginError::Input { what: "password", source })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

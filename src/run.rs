//! `burrow run`: resolve everything, report input errors, then launch.

use crate::cli::RunArgs;
use crate::idmap::{self, Caller, UsernsMode};
use crate::launch::parent::{self, LaunchError};
use crate::spec::{self, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Idmap(#[from] idmap::IdmapError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Launch(e) => e.exit_code(),
            _ => 125,
        }
    }
}

/// The calling user, from the kernel's credentials and the user database.
pub fn caller() -> Caller {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string());
    Caller { uid: uid.as_raw(), gid: nix::unistd::getgid().as_raw(), name }
}

fn say(line: String) {
    eprintln!("{line}");
}

/// Runs a container; returns the payload's exit code.
pub fn run(args: &RunArgs) -> Result<i32, RunError> {
    let caller = caller();
    let mode = args.userns.unwrap_or(UsernsMode::Auto);
    let ids = idmap::plan(mode, &caller, &mut |w| say(format!("burrow: warning: {w}")))?;
    if let Some(n) = ids.notice() {
        say(n);
    }
    let spec = spec::build(args, caller, ids)?;
    if spec.verbose {
        say(format!("burrow: uid_map {:?}", spec.ids.uid_map));
        say(format!("burrow: gid_map {:?}", spec.ids.gid_map));
    }
    Ok(parent::run(&spec, &mut say)?)
}

//! The escape suite: attempts to reach the host from inside the default sandbox, run as an unprivileged user
//! (scripts/test.sh runs this binary as burrow-t1). Every attempt must fail by default, and each is shown to
//! succeed against a deliberately weakened configuration, or on the host itself, so that no test passes
//! because the probe could not have succeeded anyway. Each file under tests/security/ is one module.

mod support;

#[path = "security/probe.rs"]
mod probe;

#[path = "security/files.rs"]
mod files;
#[path = "security/identity.rs"]
mod identity;
#[path = "security/kernel.rs"]
mod kernel;
#[path = "security/processes.rs"]
mod processes;
#[path = "security/seccomp.rs"]
mod seccomp;
#[path = "security/terminal.rs"]
mod terminal;

#[path = "security/home.rs"]
mod home;

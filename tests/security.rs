//! The escape suite (the harden engineer's modules join this file): attempts to reach the host from inside the
//! default sandbox, run as an unprivileged user (scripts/test.sh runs this binary as burrow-t1).

mod support;

#[path = "security/home.rs"]
mod home;

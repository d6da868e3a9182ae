//! Host processes of a container, named by pid and start time so that a reused pid is never signalled:
//! a pidfd pins the process, then its start time is checked, then the signal goes through the pidfd.

use std::os::fd::OwnedFd;

/// Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, names one process for the whole boot.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state is field 3.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd for `pid` if it is still the process that started at `start`.
pub fn open(pid: i32, start: u64) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after the pidfd exists: from here the pid cannot be reused while we hold it.
    (start_time(pid) == Some(start)).then_some(fd)
}

/// Sends `sig` to the process `pid` started at `start`; false when it is gone.
pub fn signal(pid: i32, start: u64, sig: i32) -> bool {
    let (Some(fd), Some(sig)) = (open(pid, start), rustix::process::Signal::from_named_raw(sig)) else {
        return false;
    };
    rustix::process::pidfd_send_signal(&fd, sig).is_ok()
}

/// A signal by name (TERM, SIGTERM, term) or number.
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigkill"), Some(9));
        assert_eq!(parse_signal("SIGUSR1"), Some(10));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }

    #[test]
    fn our_own_start_time_names_us_and_a_wrong_one_does_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("start time");
        assert!(open(me, start).is_some());
        assert!(open(me, start + 1).is_none());
    }
}

//! Host processes of the same user: seen, signalled, traced, read; the host's abstract unix sockets.

use crate::probe::*;
use crate::ready;
use crate::support::*;
use std::process::Command;

#[test]
fn a_host_process_of_the_same_user_is_invisible() {
    ready!();
    let mut sleeper = Reaped(Command::new("sleep").arg("30").spawn().expect("sleep"));
    let pid = sleeper.0.id().to_string();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let addr = format!("0x{}", maps.split('-').next().unwrap());
    // Controls: from the host the same probe signals, traces and reads it.
    assert!(on_host(&["kill", &pid]).is_ok());
    assert!(on_host(&["ptrace", &pid]).is_ok(), "control ptrace (is Yama's ptrace_scope above 0?)");
    assert!(on_host(&["vm-read", &pid, &addr]).is_ok());
    let r = rootfs();
    for args in [&[][..], WEAK] {
        assert_eq!(attempt(&r, args, &["kill", &pid]), Err(ESRCH), "{args:?}");
        assert_eq!(attempt(&r, args, &["ptrace", &pid]), Err(ESRCH), "{args:?}");
        assert_eq!(attempt(&r, args, &["vm-read", &pid, &addr]), Err(ESRCH), "{args:?}");
        assert!(attempt(&r, args, &["read", &format!("/proc/{pid}/cmdline")]).is_err(), "{args:?}");
    }
    let _ = sleeper.0.kill();
}

#[test]
fn host_abstract_unix_sockets_are_unreachable() {
    ready!();
    use std::os::linux::net::SocketAddrExt;
    let name = format!("burrow-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).expect("bind an abstract socket");
    assert!(on_host(&["abstract", &name]).is_ok(), "control");
    let r = rootfs();
    assert!(attempt(&r, WEAK, &["abstract", &name]).is_err(), "--network none");
    // Abstract sockets belong to the network namespace: sharing the host's reaches them.
    let mut host_net = WEAK.to_vec();
    host_net.extend(["--network", "host"]);
    assert!(attempt(&r, &host_net, &["abstract", &name]).is_ok());
}

//! Raw kernel calls of the hardening stage that neither `nix` nor `rustix` wrap: the session keyring, marking
//! descriptors close-on-exec in bulk, and loading a compiled seccomp program.

use std::io;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: the caller gets a new session keyring (anonymous when `name` is
/// None; with a name, the existing keyring of that name when the caller may search it), so the keys of the
/// session it came from are no longer reachable through `@s`. Returns the keyring's serial.
pub fn join_session_keyring(name: Option<&std::ffi::CStr>) -> io::Result<i64> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = name.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: `name` is NULL (the documented request for an anonymous keyring) or a valid NUL-terminated string
    // that outlives the call; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name) };
    check(rc)
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: every descriptor from `first` up is closed by the next
/// execve. Marking instead of closing keeps the sync channel usable to report a failed execve.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes plain integers; with CLOSE_RANGE_CLOEXEC it only sets flags on descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    check(rc).map(|_| ())
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes capability number `cap` from the calling thread's bounding set (a
/// capability already missing from it is no error; one the running kernel does not know is EINVAL).
pub fn capbset_drop(cap: u8) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a plain capability number; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    check(libc::c_long::from(rc)).map(|_| ())
}

/// Whether descriptor `fd` is open in this process.
pub fn fd_is_open(fd: u32) -> bool {
    let Ok(fd) = libc::c_int::try_from(fd) else { return false };
    // SAFETY: F_GETFD on a descriptor number only reads its flags (EBADF when it is not open); no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Clears FD_CLOEXEC on descriptor `fd` (a `--preserve-fds` descriptor must survive execve).
pub fn clear_cloexec(fd: u32) -> io::Result<()> {
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: F_SETFD on a descriptor number only changes its flags (EBADF when it is not open); no memory.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    check(libc::c_long::from(rc)).map(|_| ())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)` with a program compiled by `seccompiler`. Unlike
/// `seccompiler::apply_filter` it does not set no_new_privs itself: the caller decides (`--allow-setuid`), and
/// without it the kernel requires CAP_SYS_ADMIN in the caller's user namespace.
pub fn seccomp_load(prog: &[seccompiler::sock_filter]) -> io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let len = libc::c_ushort::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let fprog = SockFprog { len, filter: prog.as_ptr() };
    // SAFETY: `fprog` is a correctly laid out `struct sock_fprog` (u16 length, pointer) whose pointer covers
    // `len` live `struct sock_filter` values (seccompiler's type is `#[repr(C)]` with the kernel's layout); the
    // kernel copies the program and keeps no reference to our memory.
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_ulong, &fprog as *const SockFprog)
    };
    check(rc).map(|_| ())
}

/// The Landlock ABI version of the running kernel, or None when Landlock is missing or disabled.
pub fn landlock_abi() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer and size 0, the VERSION flag only queries; no memory is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    check(rc).ok().filter(|v| *v > 0)
}

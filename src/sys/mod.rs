//! The only module with `unsafe` code: the few kernel calls that `nix` and `rustix` do not wrap safely.
//!
//! Every block states why it is sound. Callers get safe functions with `std::io::Result`.

pub mod net;
pub mod ns;
pub mod security;
pub mod tty;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The result of [`fork`], as seen by the caller.
pub enum Forked {
    Parent(nix::unistd::Pid),
    Child,
}

/// Forks the calling process.
///
/// The launcher forks only while it is single-threaded (P0 before any helper thread exists, P1 and init always),
/// which is what makes running arbitrary Rust code in the child sound.
pub fn fork() -> io::Result<Forked> {
    debug_assert!(is_single_threaded(), "fork() in a multi-threaded process");
    // SAFETY: the process is single-threaded at every call site (asserted in debug builds), so the child owns a
    // consistent copy of every lock and allocator state and may run any code, not only async-signal-safe code.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Forks the calling process through clone3 with a pidfd of the child (`CLONE_PIDFD`), returned in the caller
/// with the child's pid. With `sibling` the child's parent is the caller's parent (`CLONE_PARENT`), which gets
/// its SIGCHLD and reaps it (the caller cannot wait for it, but can poll the pidfd for its exit and signal it);
/// without, it is the caller's child, with SIGCHLD as its exit signal. ENOSYS on kernels before 5.3.
/// `namespaces` (`CLONE_NEW*`) are created for the child as by unshare(2) in it, the PID namespace with the
/// child as its PID 1. Same single-threaded rule as [`fork`].
pub fn fork_pidfd(
    namespaces: libc::c_int,
    sibling: bool,
) -> io::Result<Option<(nix::unistd::Pid, std::os::fd::OwnedFd)>> {
    debug_assert!(is_single_threaded(), "fork_pidfd() in a multi-threaded process");
    /// `struct clone_args` of the kernel's uapi, its first version (64 bytes).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: (if sibling { libc::CLONE_PARENT } else { 0 } | libc::CLONE_PIDFD | namespaces) as u64,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        // With CLONE_PARENT the kernel takes the caller's own exit signal (and requires 0 here).
        exit_signal: if sibling { 0 } else { libc::SIGCHLD as u64 },
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: `args` is a live, correctly laid out `struct clone_args` (uapi, version 0) whose exact size is
    // passed; the kernel writes the pidfd into `pidfd`, which outlives the call. Without a stack the child
    // continues on a copy of the caller's memory, as after fork(2); the process is single-threaded (asserted in
    // debug builds), so the child owns a consistent copy of every lock and allocator state, as with [`fork`].
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::addr_of!(args), std::mem::size_of::<CloneArgs>()) };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => {
            // SAFETY: on success the kernel stored a new descriptor in `pidfd`, owned by nobody else.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
            Ok(Some((nix::unistd::Pid::from_raw(pid as i32), fd)))
        }
    }
}

/// Runs `child` in a new process that shares the caller's memory until it execs or exits (`CLONE_VM |
/// CLONE_VFORK`, posix_spawn's way): no page table is copied, so the child neither copies the caller's pages on
/// write nor faults back in the text it runs (a fork from the 9 MB binary cost ~200 µs of that). The caller is
/// suspended until then and gets the child's pid (its exit signal is SIGCHLD). Rules for `child`, which runs on
/// a stack of its own: it must end in execve or [`exit_now`], never return or unwind into the caller, and never
/// drop anything the caller owns (it may allocate: the caller is suspended and single-threaded, so the allocator
/// is consistent; what it allocates stays allocated in the caller). Its creds, signal mask, fd table, seccomp
/// filter and session are its own (none of `CLONE_FILES`, `CLONE_SIGHAND`, `CLONE_THREAD`).
pub fn spawn_shared<F: FnOnce() -> std::convert::Infallible>(child: F) -> io::Result<nix::unistd::Pid> {
    debug_assert!(is_single_threaded(), "spawn_shared() in a multi-threaded process");
    const STACK: usize = 4 << 20;
    extern "C" fn run<F: FnOnce() -> std::convert::Infallible>(slot: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `slot` is the `Option<F>` of spawn_shared's frame, alive while the caller is suspended (until
        // this process execs or exits); taking it leaves None there, so the closure runs once and is never
        // dropped by the caller.
        let child = unsafe { (*slot.cast::<Option<F>>()).take() };
        match child.map(|f| f()) {
            Some(never) => match never {},
            None => exit_now(125),
        }
    }
    let stack = Stack::guarded(STACK)?;
    let mut slot = Some(child);
    // SAFETY: the stack top is the end of a mapping of ours (page-aligned, a guard page below), `run::<F>`
    // matches the type of `slot`, which outlives the child's use of it: CLONE_VFORK suspends this thread until
    // the child execs or exits.
    let rc = unsafe {
        libc::clone(
            run::<F>,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(slot).cast(),
        )
    };
    let result = if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(nix::unistd::Pid::from_raw(rc)) };
    // The child has exec'd or exited (CLONE_VFORK): nothing uses the stack any more.
    drop(stack);
    drop(slot);
    result
}

/// A stack for a process that shares the caller's memory (`CLONE_VM`): a private anonymous mapping whose lowest
/// page is a guard, so that an overflow faults instead of writing over the caller's memory below. Unmapped when
/// dropped: drop it only once no process runs on it.
struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    fn guarded(size: usize) -> io::Result<Stack> {
        const GUARD: usize = 4096;
        // SAFETY: a fresh private anonymous mapping, requested with a null hint: it overlaps nothing of ours.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, size };
        // SAFETY: the lowest page of the mapping made above, which nothing uses yet.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // unmapped by the drop
        }
        Ok(stack)
    }

    /// The initial stack pointer: the end of the mapping (stacks grow down).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, a pointer computed within (at the end of) one allocation.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `guarded`, unmapped once (its owner says nothing runs on it any more).
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// A descriptor of the mount namespace of the process behind `pidfd` (`PIDFD_GET_MNT_NAMESPACE`, Linux 6.11+):
/// holding it keeps the namespace (and its mounts) alive after the process exits.
pub fn pidfd_mnt_namespace(pidfd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // _IO(PIDFS_IOCTL_MAGIC, 3) in linux/pidfd.h.
    const PIDFD_GET_MNT_NAMESPACE: nix::sys::ioctl::ioctl_num_type = nix::request_code_none!(0xFF, 3);
    // SAFETY: the ioctl takes no argument; on any descriptor other than a pidfd it fails with ENOTTY.
    let fd = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_MNT_NAMESPACE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the ioctl returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// True when /proc/self/task has exactly one entry.
pub fn is_single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").map(|d| d.count() == 1).unwrap_or(true)
}

/// `mount_setattr(2)` with `AT_RECURSIVE` on `path`, setting `set` attributes (`MOUNT_ATTR_*`).
///
/// Used to make a recursive bind read-only in one call: remounting submounts one by one would have to preserve
/// the locked flags (nosuid, nodev, noexec) of each mount inherited from the parent user namespace.
pub fn mount_setattr_recursive(path: &std::ffi::CStr, set: u64) -> io::Result<()> {
    mount_setattr(path, set, 0, true)
}

/// `mount_setattr(2)` on `path`: sets the `set` attributes and clears the `clr` ones (`MOUNT_ATTR_*`), on the
/// mount alone or, with `recursive`, on every mount below it too.
pub fn mount_setattr(path: &std::ffi::CStr, set: u64, clr: u64, recursive: bool) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: `path` is a valid NUL-terminated string, `attr` is a live, correctly laid out `struct mount_attr`
    // (four u64 fields, kernel uapi) and its exact size is passed; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a small procfs file whole. `std::fs::read_to_string` sizes its buffer from the file's size, which
/// procfs gives as 0, and so reads 32, 32, 64, ... bytes: 4-8 system calls for a `status` file. With a page
/// of buffer it is one read and the end-of-file read.
pub fn read_proc(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Sets `lo` of the calling process's network namespace up (see [`interface_up`]).
pub fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    interface_up(std::os::fd::AsFd::as_fd(&sock), "lo")
}

/// Sets `IFF_UP` on the network interface `name` through `SIOCGIFFLAGS`/`SIOCSIFFLAGS` on `sock` (only the
/// first call when it is already up).
pub fn interface_up(sock: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket, `req` is a valid `ifreq` that outlives the call; SIOCGIFFLAGS writes
    // only `ifr_flags` inside it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union, so reading it is defined.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `sig`'s disposition back to the default action.
pub fn default_disposition(sig: nix::sys::signal::Signal) -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context; the previous
    // disposition that signal(2) returns is dropped unused.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) }.map(drop)
}

/// What Rust's runtime start did for `main` that burrow still needs, now that `burrow`'s `main` is its own
/// entry point (src/main.rs says why): descriptors 0, 1 and 2 open (on /dev/null when closed, so that no
/// socket or file of burrow's takes their number and reaches the payload as its stdio), and SIGPIPE ignored
/// (a write to a closed pipe is an EPIPE error, not the death of burrow with a terminal left in raw mode).
pub fn process_start() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: `fds` is a live array of three `pollfd`, the length passed; a zero timeout never blocks.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for f in &fds {
        // poll(2) itself failing (EINTR, ENOMEM) is rare: then each descriptor is checked alone.
        let closed = match polled < 0 {
            // SAFETY: F_GETFD only reads the descriptor's flags; an invalid number returns EBADF.
            true => (unsafe { libc::fcntl(f.fd, libc::F_GETFD) }) < 0,
            false => f.revents & libc::POLLNVAL != 0,
        };
        // open(2) returns the lowest free number, which is this one (the ones below it are open by now); kept
        // open across exec, as the payload's stdio.
        if closed && !null_stdio() {
            exit_now(125);
        }
    }
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in signal context.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
}

/// Opens /dev/null, without close-on-exec, and leaves it open for good (see [`process_start`]).
fn null_stdio() -> bool {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else { return false };
    let kept = fcntl(&null, FcntlArg::F_SETFD(FdFlag::empty())).is_ok();
    std::mem::forget(null);
    kept
}

/// Ends the calling process with `code` (like `_exit`: stdio must be flushed, nothing else is run), leaving the
/// teardown of its address space to a short-lived process that shares it (`CLONE_VM`) and exits once the
/// caller is gone: the exit status reaches the parent without waiting for the unmapping of the binary's pages
/// (docs/benchmarks.md). That process closes every descriptor but a pidfd of the caller first (it has its own
/// copy of the table), so nothing of the caller's (a pipe, the terminal) stays open after the caller's exit; it
/// keeps the caller's blocked signals, waits at most 1 s, and is reaped by whoever adopts it. Without pidfd,
/// memory or clone, the caller simply exits.
pub fn exit_lazily(code: i32) -> ! {
    extern "C" fn linger(arg: *mut libc::c_void) -> libc::c_int {
        let pidfd = arg as usize as libc::c_int;
        let kept = KEPT_PAST_EXIT.load(std::sync::atomic::Ordering::Relaxed);
        // Closed: every descriptor but the pidfd and the one kept, in the three ranges around them.
        let (low, high) = if kept < 0 { (pidfd, pidfd) } else { (pidfd.min(kept), pidfd.max(kept)) };
        // SAFETY: only raw system calls on this stack (no allocation, no thread-local storage): the caller's
        // thread runs at the same time in the same memory, until its _exit. close_range spares the pidfd and
        // the kept descriptor (an empty range is EINVAL, harmless), poll waits for the caller's end, exit(2)
        // ends this process alone.
        unsafe {
            libc::syscall(libc::SYS_close_range, 0u32, (low as u32).wrapping_sub(1), 0u32);
            if high > low + 1 {
                libc::syscall(libc::SYS_close_range, low as u32 + 1, high as u32 - 1, 0u32);
            }
            libc::syscall(libc::SYS_close_range, high as u32 + 1, u32::MAX, 0u32);
            let mut fds = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
            libc::poll(&mut fds, 1, 1000);
            libc::syscall(libc::SYS_exit, 0);
        }
        0
    }
    const STACK: usize = 64 << 10;
    // Never unmapped: the address space goes with both processes.
    let stack = Stack::guarded(STACK).map(std::mem::ManuallyDrop::new);
    // SAFETY: pidfd_open of our own pid; `linger` matches clone's callback type and gets the pidfd as its
    // argument; after clone this thread only calls _exit.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as libc::c_int;
        if let (true, Ok(stack)) = (pidfd >= 0, &stack) {
            libc::clone(linger, stack.top(), libc::CLONE_VM, pidfd as usize as *mut _);
        }
        libc::_exit(code)
    }
}

/// The descriptor [`keep_past_exit`] handed over (-1: none).
static KEPT_PAST_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Keeps `fd` open until after the process has exited (closed by [`exit_lazily`]'s process once the caller is
/// gone, or by the exit itself without it): a direct launch's hold on init's mount namespace, whose teardown
/// must not delay burrow's exit status. A second call replaces (closes) the first descriptor.
pub fn keep_past_exit(fd: std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let old = KEPT_PAST_EXIT.swap(fd.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
    if old >= 0 {
        // SAFETY: `old` came from `into_raw_fd` above in an earlier call and was owned by nothing else since.
        drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(old) });
    }
}

/// Ends the calling process at once with `code`, without running exit handlers or flushing stdio buffers:
/// a forked child must not run the parent's copies of them.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes a plain integer and never returns; it touches no memory of the process.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of descriptors the kernel has just installed in this process through `SCM_RIGHTS`.
/// Call it only with the numbers of one `recvmsg` answer, once: nothing else refers to them yet.
pub fn adopt_received(raw: Vec<std::os::fd::RawFd>) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    raw.into_iter()
        .filter(|fd| *fd >= 0)
        // SAFETY: each number was installed by the kernel for this recvmsg call only (see above), so this is
        // its sole owner and it is closed exactly once, when the OwnedFd drops.
        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        .collect()
}

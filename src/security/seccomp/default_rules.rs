//! burrow's default seccomp profile, as seccompiler rules. Shared by `build.rs` (which compiles it to BPF for
//! the target architecture at build time, so that no run pays for it) and the unit tests (which check that the
//! embedded filter is this one). It depends on `seccompiler` and plain data only, so both can include it.
//!
//! Two parts, laid out as one filter by [`table`] and `tree::compile`:
//! 1. **cutoff**: every syscall the profile knows is allowed, anything else gets `ENOSYS`: syscalls newer than
//!    the profile (a future clone variant must not slip through a deny list), `clone3` (its flags live in
//!    memory, which seccomp cannot read: libc then falls back to `clone`, whose flags it can), and x32-ABI
//!    numbers on x86_64.
//! 2. **deny**: `EPERM` for what the mainstream default profiles (Docker's, containers/common's) deny.
//!
//! [`filters`] writes the same profile as two linear seccompiler filters (the kernel runs both and, on a tie
//! between two `ERRNO` results, keeps the one of the filter installed last, the deny filter): the reference
//! the single filter is tested against.

use super::tree::Outcome;
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
use std::collections::BTreeMap;

/// Denied outright: kernel modules, kexec, file handles (open_by_handle_at reads any inode of a filesystem the
/// container can see: the "shocker" escape), BPF, perf, userfaultfd (a classic exploit helper), io_uring
/// (a large, often vulnerable surface that bypasses seccomp for the operations it runs), clock and accounting
/// changes, swap, quotas, the kernel log, and obsolete calls.
pub const DENIED: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "name_to_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "syslog",
    "vm86",
    "vm86old",
    "iopl",
    "ioperm",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "stime",
];

/// `personality(2)` values that are allowed (Docker's list): PER_LINUX, PER_LINUX32, UNAME26 with each, and the
/// query. Everything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) weakens exploit mitigations.
pub const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// TIOCSTI pushes bytes into a terminal's input queue, TIOCLINUX (subcode 2/3) pastes the console selection:
/// both inject keystrokes into whatever reads that terminal (the user's shell).
pub const TIOCSTI: u64 = 0x5412;
pub const TIOCLINUX: u64 = 0x541c;
pub const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Syscall numbers of the target architecture, looked up by name.
pub trait Table {
    fn number(&self, name: &str) -> Option<i64>;
    /// Every syscall the table knows.
    fn all(&self) -> Vec<i64>;
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    // Dword: the comparison looks at the low 32 bits only. For ioctl's request that is the fix for
    // CVE-2019-10063 (the kernel truncates the request to 32 bits, so a filter comparing 64 bits is bypassed by
    // setting the high ones); flags and personality values are 32-bit as well.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).expect("argument index below 6")
}

fn rule(conds: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conds).expect("a non-empty rule")
}

/// The profile as one table for [`super::tree::compile`]: what each known syscall number gets; numbers
/// missing from it get ENOSYS. The same decisions as [`filters`] (which the unit tests check, number by
/// number): a denied call gets EPERM, a call with argument rules EPERM when one matches, every other known
/// number is allowed, `clone3` unless `nested` is not known.
pub fn table(t: &dyn Table, nested: bool) -> BTreeMap<u32, Outcome> {
    let mut table: BTreeMap<u32, Outcome> =
        known(t, nested).into_iter().map(|n| (as_nr(n), Outcome::Always(SeccompAction::Allow))).collect();
    for (n, rules) in deny(t, nested) {
        let outcome = if rules.is_empty() {
            Outcome::Always(SeccompAction::Errno(libc_eperm()))
        } else {
            Outcome::Rules { rules, on_match: SeccompAction::Errno(libc_eperm()), otherwise: SeccompAction::Allow }
        };
        table.insert(as_nr(n), outcome);
    }
    table
}

/// What every number absent from [`table`] gets.
pub fn unknown() -> SeccompAction {
    SeccompAction::Errno(libc_enosys())
}

fn as_nr(n: i64) -> u32 {
    u32::try_from(n).expect("syscall numbers are small and positive")
}

/// The reference layout, two linear seccompiler filters (cutoff, deny): no longer installed (each costs the
/// kernel a scan of the whole chain per syscall number at install time), kept as the specification that
/// [`table`]'s single filter is checked against.
pub fn filters(t: &dyn Table, arch: seccompiler::TargetArch, nested: bool) -> Vec<SeccompFilter> {
    let known = known(t, nested).into_iter().map(|n| (n, vec![])).collect();
    let cutoff = SeccompFilter::new(known, SeccompAction::Errno(libc_enosys()), SeccompAction::Allow, arch)
        .expect("distinct actions");
    let deny = SeccompFilter::new(deny(t, nested), SeccompAction::Allow, SeccompAction::Errno(libc_eperm()), arch)
        .expect("distinct actions");
    vec![cutoff, deny]
}

/// The numbers the profile knows: the table's, without `clone3` unless `nested`.
fn known(t: &dyn Table, nested: bool) -> Vec<i64> {
    let clone3 = t.number("clone3");
    t.all().into_iter().filter(|n| nested || Some(*n) != clone3).collect()
}

/// The denied numbers, each with its argument rules (none: denied whatever the arguments).
fn deny(t: &dyn Table, nested: bool) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut add = |name: &str, rules: Vec<SeccompRule>| {
        if let Some(n) = t.number(name) {
            deny.insert(n, rules);
        }
    };
    for name in DENIED {
        add(name, vec![]);
    }
    let not_allowed = PERSONALITIES.iter().map(|v| cond(0, SeccompCmpOp::Ne, *v)).collect();
    add("personality", vec![rule(not_allowed)]);
    add(
        "ioctl",
        vec![rule(vec![cond(1, SeccompCmpOp::Eq, TIOCSTI)]), rule(vec![cond(1, SeccompCmpOp::Eq, TIOCLINUX)])],
    );
    if !nested {
        let newuser = || vec![rule(vec![cond(0, SeccompCmpOp::MaskedEq(CLONE_NEWUSER), CLONE_NEWUSER)])];
        add("clone", newuser());
        add("unshare", newuser());
    }
    deny
}

// Spelled out so that this file needs no libc (build.rs includes it); the same on every Linux architecture.
const fn libc_enosys() -> u32 {
    38
}
const fn libc_eperm() -> u32 {
    1
}

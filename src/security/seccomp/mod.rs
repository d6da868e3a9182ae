//! The payload's seccomp filter: burrow's default (compiled at build time, see `build.rs` and
//! [`default_rules`]), none (`--seccomp unconfined`), or an OCI / containers JSON profile (`--seccomp FILE`),
//! compiled by `seccompiler` in P0 before anything starts, so that a malformed profile is a one-line error.

pub mod default_rules;
mod oci;
pub mod tree;

pub use oci::{compile_file, ProfileError};
use serde::{Deserialize, Serialize};

/// Which filter the payload gets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// burrow's default profile; `nested` lets the payload create user namespaces (`--allow-nested`).
    #[default]
    Default,
    Unconfined,
    /// Compiled programs, installed in order (see [`oci`]), each instruction packed by [`pack`].
    Custom(Vec<Vec<u64>>),
}

static DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp-default.bpf"));
static NESTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp-nested.bpf"));

/// The programs to install, in order.
pub fn programs(s: &Seccomp, nested: bool) -> Vec<seccompiler::BpfProgram> {
    match s {
        Seccomp::Unconfined => vec![],
        Seccomp::Default => decode(if nested { NESTED } else { DEFAULT }),
        Seccomp::Custom(filters) => filters.iter().map(|f| f.iter().map(|i| unpack(*i)).collect()).collect(),
    }
}

/// Whether this build carries a default filter (seccompiler targets x86_64, aarch64 and riscv64 only).
pub fn has_default() -> bool {
    !DEFAULT.is_empty()
}

/// Installs `programs` in order. The caller must have no_new_privs set or hold CAP_SYS_ADMIN in its user
/// namespace.
pub fn install(programs: &[seccompiler::BpfProgram]) -> std::io::Result<()> {
    programs.iter().try_for_each(|p| crate::sys::security::seccomp_load(p))
}

/// Reads build.rs's format: per filter, a u32 count then 8-byte instructions (all little-endian).
fn decode(mut bytes: &[u8]) -> Vec<seccompiler::BpfProgram> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        bytes = &bytes[4..];
        let (body, rest) = bytes.split_at((n * 8).min(bytes.len()));
        out.push(
            body.chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_le_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect(),
        );
        bytes = rest;
    }
    out
}

/// One instruction as a u64 (code, jt, jf in the low 32 bits, k in the high ones), for serialization.
pub fn pack(i: &seccompiler::sock_filter) -> u64 {
    u64::from(i.code) | u64::from(i.jt) << 16 | u64::from(i.jf) << 24 | u64::from(i.k) << 32
}

fn unpack(v: u64) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code: v as u16, jt: (v >> 16) as u8, jf: (v >> 24) as u8, k: (v >> 32) as u32 }
}

/// The native syscall table, for default_rules and JSON profiles.
pub(crate) struct Native;

impl default_rules::Table for Native {
    fn number(&self, name: &str) -> Option<i64> {
        name.parse::<syscalls::Sysno>().ok().map(|s| i64::from(s.id()))
    }
    fn all(&self) -> Vec<i64> {
        syscalls::Sysno::iter().map(|s| i64::from(s.id())).collect()
    }
}

/// seccompiler's name for the architecture this binary runs on.
pub(crate) fn native_arch() -> Option<seccompiler::TargetArch> {
    std::env::consts::ARCH.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccompiler::{sock_filter, SeccompAction};

    fn reference(nested: bool) -> Vec<seccompiler::BpfProgram> {
        let arch = native_arch().expect("a seccompiler architecture");
        default_rules::filters(&Native, arch, nested).into_iter().map(|f| f.try_into().unwrap()).collect()
    }

    fn compiled(nested: bool) -> seccompiler::BpfProgram {
        let arch = native_arch().expect("a seccompiler architecture");
        tree::compile(arch, &default_rules::table(&Native, nested), default_rules::unknown())
    }

    #[test]
    fn the_embedded_default_is_the_profile_in_default_rules() {
        assert_eq!(programs(&Seccomp::Default, false), vec![compiled(false)]);
        assert_eq!(programs(&Seccomp::Default, true), vec![compiled(true)]);
        assert_ne!(compiled(false), compiled(true));
    }

    /// The kernel's verdict over several filters: every filter runs, the lowest action (as a signed
    /// number: KILL_PROCESS first, ALLOW last) wins, and on a tie the filter installed last.
    fn kernel_verdict(filters: &[seccompiler::BpfProgram], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let action = |ret: u32| (ret & 0xffff_0000) as i32;
        let mut verdict = u32::from(SeccompAction::Allow);
        for f in filters.iter().rev() {
            let ret = tree::run(f, arch, nr, args);
            if action(ret) < action(verdict) {
                verdict = ret;
            }
        }
        verdict
    }

    /// Argument values around every constant the rules compare with, with and without high bits (the
    /// comparisons look at 32 bits), and a spread of other values.
    fn values() -> Vec<u64> {
        let mut base: Vec<u64> = vec![0, 1, u64::from(u32::MAX), u64::MAX];
        base.extend(default_rules::PERSONALITIES);
        base.extend([default_rules::TIOCSTI, default_rules::TIOCLINUX, default_rules::CLONE_NEWUSER]);
        base.push(default_rules::CLONE_NEWUSER | 0x11 | 0x2_0000);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..24 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            base.push(seed);
        }
        let mut out = Vec::new();
        for v in base {
            for w in [v, v.wrapping_add(1), v.wrapping_sub(1)] {
                out.extend([w, w & 0xffff_ffff, w | 0xdead_beef_0000_0000]);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The single searched filter decides every call as the two linear seccompiler filters of the same
    /// profile do: every number up to 1,200, x32-ABI numbers, the edges of the u32 range; for the numbers with
    /// argument rules, every pair of argument values from [`values`] in the first two arguments; another
    /// architecture is killed by both.
    #[test]
    fn the_searched_filter_decides_every_call_as_the_linear_filters() {
        let arch = match std::env::consts::ARCH {
            "x86_64" => 0xc000_003e,
            "aarch64" => 0xc000_00b7,
            "riscv64" => 0xc000_00f3,
            other => panic!("no audit architecture for {other}"),
        };
        let vals = values();
        for nested in [false, true] {
            let (linear, tree) = (reference(nested), compiled(nested));
            assert!(tree.len() * 4 < linear.iter().map(Vec::len).sum(), "{} instructions", tree.len());
            let with_rules: Vec<u32> = default_rules::table(&Native, nested)
                .into_iter()
                .filter(|(_, o)| matches!(o, tree::Outcome::Rules { .. }))
                .map(|(n, _)| n)
                .collect();
            let mut numbers: Vec<u32> = (0..1200).collect();
            numbers.extend((0..1200).map(|n| n | 0x4000_0000));
            numbers.extend([0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX]);
            let mut calls = 0usize;
            for nr in numbers {
                let pairs: Vec<[u64; 6]> = if with_rules.contains(&nr) {
                    vals.iter().flat_map(|&a| vals.iter().map(move |&b| [a, b, a, b, 0, 0])).collect()
                } else {
                    vec![[0; 6], [default_rules::CLONE_NEWUSER, default_rules::TIOCSTI, 0, 0, 0, 0]]
                };
                for args in pairs {
                    let want = kernel_verdict(&linear, arch, nr, args);
                    assert_eq!(tree::run(&tree, arch, nr, args), want, "nr {nr} args {args:x?} nested {nested}");
                    calls += 1;
                }
            }
            for other in [0x4000_0003u32, 0xc000_0028, 0] {
                let kill = kernel_verdict(&linear, other, 0, [0; 6]);
                assert_eq!(kill, u32::from(SeccompAction::KillProcess));
                assert_eq!(tree::run(&tree, other, 0, [0; 6]), kill);
            }
            assert!(calls > 10_000, "{calls} calls compared");
        }
    }

    /// Jumps longer than 255 instructions (a rule chain pushed past the limit) take the long form.
    #[test]
    fn long_lower_halves_are_jumped_over() {
        use std::collections::BTreeMap;
        let arch = native_arch().expect("a seccompiler architecture");
        let rule = |v: u64| {
            let c = seccompiler::SeccompCondition::new(
                0,
                seccompiler::SeccompCmpArgLen::Qword,
                seccompiler::SeccompCmpOp::Eq,
                v,
            )
            .unwrap();
            seccompiler::SeccompRule::new(vec![c]).unwrap()
        };
        let eperm = SeccompAction::Errno(1);
        let mut table = BTreeMap::new();
        table.insert(
            5,
            tree::Outcome::Rules {
                rules: (0..100).map(rule).collect(),
                on_match: eperm.clone(),
                otherwise: SeccompAction::Allow,
            },
        );
        table.insert(9, tree::Outcome::Always(SeccompAction::Allow));
        let prog = tree::compile(arch, &table, SeccompAction::Errno(38));
        assert!(prog.iter().any(|i: &sock_filter| i.code == 0x05 && i.k > 255), "no long jump");
        let a = match std::env::consts::ARCH {
            "x86_64" => 0xc000_003e,
            "aarch64" => 0xc000_00b7,
            _ => 0xc000_00f3,
        };
        assert_eq!(tree::run(&prog, a, 5, [42, 0, 0, 0, 0, 0]), u32::from(eperm));
        assert_eq!(tree::run(&prog, a, 5, [100, 0, 0, 0, 0, 0]), u32::from(SeccompAction::Allow));
        assert_eq!(tree::run(&prog, a, 9, [0; 6]), u32::from(SeccompAction::Allow));
        for nr in [0, 4, 6, 8, 10, u32::MAX] {
            assert_eq!(tree::run(&prog, a, nr, [0; 6]), u32::from(SeccompAction::Errno(38)), "nr {nr}");
        }
    }

    #[test]
    fn custom_programs_survive_packing() {
        let progs = reference(false);
        let packed = Seccomp::Custom(progs.iter().map(|p| p.iter().map(pack).collect()).collect());
        assert_eq!(programs(&packed, false), progs);
        assert!(programs(&Seccomp::Unconfined, false).is_empty());
    }
}

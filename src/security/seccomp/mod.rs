//! The payload's seccomp filter: burrow's default (compiled at build time, see `build.rs` and
//! [`default_rules`]), none (`--seccomp unconfined`), or an OCI / containers JSON profile (`--seccomp FILE`),
//! compiled by `seccompiler` in P0 before anything starts, so that a malformed profile is a one-line error.

pub mod default_rules;
mod oci;

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

    fn compiled(nested: bool) -> Vec<seccompiler::BpfProgram> {
        let arch = native_arch().expect("a seccompiler architecture");
        default_rules::filters(&Native, arch, nested).into_iter().map(|f| f.try_into().unwrap()).collect()
    }

    #[test]
    fn the_embedded_default_is_the_profile_in_default_rules() {
        assert_eq!(programs(&Seccomp::Default, false), compiled(false));
        assert_eq!(programs(&Seccomp::Default, true), compiled(true));
        assert_ne!(compiled(false), compiled(true));
    }

    #[test]
    fn custom_programs_survive_packing() {
        let progs = compiled(false);
        let packed = Seccomp::Custom(progs.iter().map(|p| p.iter().map(pack).collect()).collect());
        assert_eq!(programs(&packed, false), progs);
        assert!(programs(&Seccomp::Unconfined, false).is_empty());
    }
}

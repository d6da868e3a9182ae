//! Compiles burrow's default seccomp profile (src/security/seccomp/default_rules.rs) to BPF for the target
//! architecture, so that a run only copies the ready program into the kernel: one filter that finds the
//! syscall number by binary search (src/security/seccomp/tree.rs).
//!
//! Output in OUT_DIR: `seccomp-default.bpf` and `seccomp-nested.bpf` (new user namespaces allowed), each a
//! sequence of filters (one today): a little-endian u32 instruction count, then 8 bytes per instruction (code u16, jt u8,
//! jf u8, k u32, little-endian). An architecture seccompiler cannot target gets empty files: burrow then says
//! at run time that it has no default filter there.

#[allow(dead_code)]
#[path = "src/security/seccomp/default_rules.rs"]
mod default_rules;
#[allow(dead_code)]
#[path = "src/security/seccomp/tree.rs"]
mod tree;

use std::path::Path;

struct Arch(&'static str);

macro_rules! per_arch {
    ($self:expr, |$m:ident| $body:expr) => {
        match $self.0 {
            "x86_64" => {
                use syscalls::x86_64 as $m;
                $body
            }
            "aarch64" => {
                use syscalls::aarch64 as $m;
                $body
            }
            "riscv64" => {
                use syscalls::riscv64 as $m;
                $body
            }
            _ => Default::default(),
        }
    };
}

impl default_rules::Table for Arch {
    fn number(&self, name: &str) -> Option<i64> {
        per_arch!(self, |m| name.parse::<m::Sysno>().ok().map(|s| i64::from(s.id())))
    }
    fn all(&self) -> Vec<i64> {
        per_arch!(self, |m| m::Sysno::iter().map(|s| i64::from(s.id())).collect())
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/security/seccomp/default_rules.rs");
    println!("cargo:rerun-if-changed=src/security/seccomp/tree.rs");
    // burrow's binaries as position-dependent executables: a PIE of burrow's size carries ~10,000 relative
    // relocations (its vtables and string tables), which ld.so applies at every start, dirtying ~40 pages that
    // P1, init and the payload's parent then copy on write (docs/benchmarks.md). Only the binaries: proc macros
    // and this script stay as they are.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
    let target = match arch.as_str() {
        "x86_64" => Some((seccompiler::TargetArch::x86_64, "x86_64")),
        "aarch64" => Some((seccompiler::TargetArch::aarch64, "aarch64")),
        "riscv64" => Some((seccompiler::TargetArch::riscv64, "riscv64")),
        _ => None,
    };
    for (file, nested) in [("seccomp-default.bpf", false), ("seccomp-nested.bpf", true)] {
        let mut bytes = Vec::new();
        if let Some((target_arch, name)) = &target {
            let table = default_rules::table(&Arch(name), nested);
            for prog in [tree::compile(*target_arch, &table, default_rules::unknown())] {
                bytes.extend_from_slice(&(prog.len() as u32).to_le_bytes());
                for i in &prog {
                    bytes.extend_from_slice(&i.code.to_le_bytes());
                    bytes.push(i.jt);
                    bytes.push(i.jf);
                    bytes.extend_from_slice(&i.k.to_le_bytes());
                }
            }
        }
        std::fs::write(Path::new(&out).join(file), bytes).expect("write the compiled filter");
    }
}

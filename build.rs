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
    static_unwinder(Path::new(&out));
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

/// Links the binaries with libgcc's unwinder as a static archive (libgcc_eh.a) instead of libgcc_s.so.1, which
/// Rust's standard library asks for by name (`-lgcc_s`). Loading libgcc_s runs its constructor
/// `__cpu_indicator_init`, a series of CPUID instructions: each one is a VM exit, ~4 us on this project's
/// machines, ~80 us of every start of burrow (docs/benchmarks.md). A directory with a linker script named
/// `libgcc_s.so` that names the archive is searched before the system directories, so `-lgcc_s` finds it. Only
/// for glibc targets whose C compiler knows the archive; otherwise nothing changes.
fn static_unwinder(out: &Path) {
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
        || std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("HOST") != std::env::var("TARGET")
    {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(found) = std::process::Command::new(cc).arg("-print-file-name=libgcc_eh.a").output() else { return };
    let archive = String::from_utf8_lossy(&found.stdout).trim().to_string();
    // Without the archive, the compiler prints the bare name back.
    if !found.status.success() || !Path::new(&archive).is_absolute() || !Path::new(&archive).is_file() {
        return;
    }
    let dir = out.join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwinder");
    std::fs::write(dir.join("libgcc_s.so"), format!("INPUT ( {archive} )\n")).expect("write the linker script");
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
}

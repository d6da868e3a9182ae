//! Lays a seccomp profile out as one filter that finds a syscall number by binary search over ranges of
//! numbers with the same outcome, instead of seccompiler's linear chain of one comparison per number.
//!
//! Why: the kernel checks, when a filter is installed, which syscall numbers it allows whatever the
//! arguments (the action cache of Linux 5.11+), by emulating the filter once per number. A linear chain of
//! ~470 numbers costs ~470 x ~470 emulated instructions: 1.25 ms per run on the development VM, against
//! 0.04 ms for a search of a few dozen ranges. Shared by `build.rs` (the default profile, at build time)
//! and burrow (unit tests), like `default_rules.rs`; it depends on `seccompiler` and plain data only.
//!
//! What is seccompiler's and what is ours: the architecture check and the argument comparisons of a
//! syscall's rules are seccompiler's own output (`BpfProgram::from(SeccompRule)`, the same code its filters
//! contain); this file only emits the number search around them (`JGE` between ranges, `JA` when a jump is
//! longer than 255 instructions, `RET` with seccompiler's encoding of each action). `check` in the unit tests
//! runs the result against seccompiler's linear filters for every syscall number and many argument values.

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;

/// What the filter does with one syscall number.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The same action whatever the arguments.
    Always(SeccompAction),
    /// `on_match` when one of the rules matches the arguments, else `otherwise`.
    Rules { rules: Vec<SeccompRule>, on_match: SeccompAction, otherwise: SeccompAction },
}

// Classic BPF opcodes (linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS (0x00 | 0x00 | 0x20).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;
/// Offset of the syscall number in `struct seccomp_data`.
const DATA_NR: u32 = 0;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

/// One filter for `arch`: numbers in `table` get their outcome, every other number (below, between and
/// above them, up to `u32::MAX`, which covers x32-ABI numbers on x86_64) gets `otherwise`. A process of
/// another architecture is killed, as by every seccompiler filter.
pub fn compile(arch: TargetArch, table: &BTreeMap<u32, Outcome>, otherwise: SeccompAction) -> BpfProgram {
    // seccompiler's program for a filter without rules is its architecture check and then one RET: keep the
    // check, so that this filter checks the architecture exactly as seccompiler's do.
    let empty = SeccompFilter::new(BTreeMap::new(), SeccompAction::Allow, SeccompAction::KillProcess, arch)
        .expect("distinct actions");
    let mut prog: BpfProgram = empty.try_into().expect("an empty filter compiles");
    prog.pop();
    prog.push(stmt(LD_W_ABS, DATA_NR));
    let other = Outcome::Always(otherwise);
    search(&ranges(table, &other), &mut prog);
    prog
}

/// A range of numbers from `start` up to the next range's start, and what they get.
struct Range<'a> {
    start: u32,
    outcome: &'a Outcome,
}

/// The ranges covering 0..=u32::MAX, numbers absent from `table` getting `other`: neighbouring numbers with
/// the same `Always` outcome share one range; a number with rules is a range of its own.
fn ranges<'a>(table: &'a BTreeMap<u32, Outcome>, other: &'a Outcome) -> Vec<Range<'a>> {
    let mut out: Vec<Range<'a>> = Vec::new();
    let mut push = |start: u32, outcome: &'a Outcome| {
        let joins = matches!(outcome, Outcome::Always(_)) && out.last().is_some_and(|last| last.outcome == outcome);
        if !joins {
            out.push(Range { start, outcome });
        }
    };
    let mut next = 0u32;
    for (&nr, outcome) in table {
        if nr > next {
            push(next, other);
        }
        push(nr, outcome);
        next = match nr.checked_add(1) {
            Some(n) => n,
            None => return out,
        };
    }
    push(next, other);
    out
}

/// Emits the search over `ranges` (the accumulator holds the syscall number on entry).
fn search(ranges: &[Range], out: &mut BpfProgram) {
    if let [only] = ranges {
        leaf(only.outcome, out);
        return;
    }
    let mid = ranges.len() / 2;
    let mut below = BpfProgram::new();
    search(&ranges[..mid], &mut below);
    let k = ranges[mid].start;
    match u8::try_from(below.len()) {
        // nr >= k: jump over the lower half, else fall into it
        Ok(skip) => out.push(sock_filter { code: JMP_JGE_K, jt: skip, jf: 0, k }),
        Err(_) => {
            let skip = u32::try_from(below.len()).expect("a filter shorter than 4096 instructions");
            // nr >= k: fall onto the long jump over the lower half, else skip it
            out.push(sock_filter { code: JMP_JGE_K, jt: 0, jf: 1, k });
            out.push(stmt(JMP_JA, skip));
        }
    }
    out.extend(below);
    search(&ranges[mid..], out);
}

/// The code for one range; every path ends in a RET.
fn leaf(outcome: &Outcome, out: &mut BpfProgram) {
    match outcome {
        Outcome::Always(action) => out.push(stmt(RET_K, u32::from(action.clone()))),
        Outcome::Rules { rules, on_match, otherwise } => {
            // seccompiler's layout of a rule chain: each rule's comparisons jump past the rule's RET when one
            // fails, onto the next rule, and after the last rule onto `otherwise`.
            for rule in rules {
                out.extend(BpfProgram::from(rule.clone()));
                out.push(stmt(RET_K, u32::from(on_match.clone())));
            }
            out.push(stmt(RET_K, u32::from(otherwise.clone())));
        }
    }
}

/// A classic-BPF interpreter for seccomp programs (the instructions seccompiler and this file emit), for
/// tests: the result of `prog` for a call of `nr` with `args` from a process of audit architecture `arch`.
#[cfg(test)]
pub fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            16..=63 if off % 4 == 0 => {
                let a = args[((off - 16) / 8) as usize];
                if (off - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => panic!("load from offset {off}"),
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = &prog[pc];
        pc += 1;
        let take = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            LD_W_ABS => acc = word(i.k),
            0x54 => acc &= i.k, // ALU AND K
            JMP_JA => pc += i.k as usize,
            0x15 => pc += take(acc == i.k), // JEQ K
            0x25 => pc += take(acc > i.k),  // JGT K
            JMP_JGE_K => pc += take(acc >= i.k),
            0x45 => pc += take(acc & i.k != 0), // JSET K
            RET_K => return i.k,
            c => panic!("opcode {c:#x} at {}", pc - 1),
        }
    }
}

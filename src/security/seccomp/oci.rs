//! `--seccomp FILE`: the OCI runtime-spec / containers seccomp JSON (`defaultAction`, `defaultErrnoRet`,
//! `syscalls[] {names, action, errnoRet, args[] {index, value, valueTwo, op}, includes, excludes}`), compiled
//! with seccompiler for the native architecture.
//!
//! seccompiler gives one filter a single match action, so a profile becomes a stack of filters: a base filter
//! returning the default action for every syscall no entry matches, then one filter per other action. The
//! kernel runs them all and keeps the strongest result (KILL > TRAP > ERRNO > TRACE > LOG > ALLOW); on a tie
//! between two ERRNO values the filter installed last wins. Not supported: `SCMP_ACT_NOTIFY` (an error),
//! `architectures`/`flags` (the native architecture only; a process of another ABI is killed), and
//! `includes.caps`/`excludes.caps` are judged against the payload's capability set as podman does.
//! Syscall names this build does not know are skipped, as libseccomp-based runtimes do.

use super::{native_arch, pack, Native};
use crate::security::seccomp::default_rules::Table;
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("seccomp profile {path}: {what}")]
pub struct ProfileError {
    pub path: PathBuf,
    pub what: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    names: Vec<String>,
    /// Docker's old single-name form.
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// Per syscall number: None matches every call, Some(rules) any one of the rules.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// Reads and compiles the profile at `path` for a payload holding the capabilities in `caps` (a bit mask).
pub fn compile_file(path: &Path, caps: u64) -> Result<Vec<Vec<u64>>, ProfileError> {
    let fail = |what: String| ProfileError { path: path.to_path_buf(), what };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    compile(&text, caps).map_err(fail)
}

fn compile(text: &str, caps: u64) -> Result<Vec<Vec<u64>>, String> {
    let p: Profile = serde_json::from_str(text).map_err(|e| format!("not a seccomp profile: {e}"))?;
    let arch = native_arch().ok_or("seccomp filters are not supported on this architecture")?;
    let default = action(&p.default_action, p.default_errno_ret)?;
    let mut all: Rules = BTreeMap::new();
    let mut by_action: BTreeMap<u32, (SeccompAction, Rules)> = BTreeMap::new();
    for (i, e) in p.syscalls.iter().enumerate() {
        let act = action(&e.action, e.errno_ret).map_err(|m| format!("syscalls[{i}]: {m}"))?;
        if !applies(&e.includes, caps, true) || !applies(&e.excludes, caps, false) {
            continue;
        }
        let rule = match e.args.is_empty() {
            true => None,
            false => Some(rule(&e.args).map_err(|m| format!("syscalls[{i}]: {m}"))?),
        };
        for name in e.names.iter().chain(&e.name) {
            let Some(nr) = Native.number(name) else { continue };
            merge(&mut all, nr, rule.clone());
            if act != SeccompAction::Allow {
                let entry = by_action.entry(u32::from(act.clone())).or_insert_with(|| (act.clone(), BTreeMap::new()));
                merge(&mut entry.1, nr, rule.clone());
            }
        }
    }
    let mut filters = Vec::new();
    if default != SeccompAction::Allow {
        // Every syscall some entry matches passes the base filter; its own action comes from the filters below.
        filters.push(SeccompFilter::new(rules(all), default.clone(), SeccompAction::Allow, arch));
    }
    for (act, r) in by_action.into_values() {
        filters.push(SeccompFilter::new(rules(r), SeccompAction::Allow, act, arch));
    }
    if filters.is_empty() {
        // Allow everything: still one (trivial) filter, so that the profile is visibly in force.
        filters.push(SeccompFilter::new(BTreeMap::new(), SeccompAction::Allow, SeccompAction::Log, arch));
    }
    filters
        .into_iter()
        .map(|f| {
            let prog: seccompiler::BpfProgram = f.and_then(|f| f.try_into()).map_err(|e| e.to_string())?;
            Ok(prog.iter().map(pack).collect())
        })
        .collect()
}

fn merge(map: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    let slot = map.entry(nr).or_insert_with(|| Some(vec![]));
    match (slot.as_mut(), rule) {
        (Some(v), Some(r)) => v.push(r),
        (_, None) => *slot = None,
        (None, Some(_)) => {}
    }
}

fn rules(map: Rules) -> BTreeMap<i64, Vec<SeccompRule>> {
    map.into_iter().map(|(nr, r)| (nr, r.unwrap_or_default())).collect()
}

fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(0)),
        "SCMP_ACT_LOG" => SeccompAction::Log,
        other => return Err(format!("unsupported action {other:?}")),
    })
}

fn rule(args: &[Arg]) -> Result<SeccompRule, String> {
    let conds = args
        .iter()
        .map(|a| {
            let op = match a.op.as_str() {
                "SCMP_CMP_EQ" => SeccompCmpOp::Eq,
                "SCMP_CMP_NE" => SeccompCmpOp::Ne,
                "SCMP_CMP_LT" => SeccompCmpOp::Lt,
                "SCMP_CMP_LE" => SeccompCmpOp::Le,
                "SCMP_CMP_GT" => SeccompCmpOp::Gt,
                "SCMP_CMP_GE" => SeccompCmpOp::Ge,
                // libseccomp's (arg & value) == valueTwo.
                "SCMP_CMP_MASKED_EQ" => SeccompCmpOp::MaskedEq(a.value),
                other => return Err(format!("unsupported comparison {other:?}")),
            };
            let value = if a.op == "SCMP_CMP_MASKED_EQ" { a.value_two } else { a.value };
            SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    SeccompRule::new(conds).map_err(|e| e.to_string())
}

/// Whether an entry's `includes` (wanted = true) or `excludes` (wanted = false) lets it apply here.
fn applies(c: &Condition, caps: u64, wanted: bool) -> bool {
    let has_cap = |name: &String| {
        let name = if name.starts_with("CAP_") { name.clone() } else { format!("CAP_{name}") };
        name.parse::<caps::Capability>().is_ok_and(|c| caps & c.bitmask() != 0)
    };
    let native = native_arch_names();
    let checks = [
        (!c.caps.is_empty()).then(|| if wanted { c.caps.iter().all(has_cap) } else { c.caps.iter().any(has_cap) }),
        (!c.arches.is_empty()).then(|| c.arches.iter().any(|a| native.contains(&a.as_str()))),
        c.min_kernel.as_deref().map(kernel_at_least),
    ];
    let mut present = checks.into_iter().flatten();
    if wanted {
        present.all(|ok| ok)
    } else {
        !present.any(|hit| hit)
    }
}

fn native_arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
        "aarch64" => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        "riscv64" => &["riscv64", "SCMP_ARCH_RISCV64"],
        _ => &[],
    }
}

fn kernel_at_least(min: &str) -> bool {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    version(&release) >= version(min)
}

fn version(s: &str) -> (u32, u32) {
    let mut parts = s.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_profile_compiles_to_a_base_filter_and_one_per_action() {
        let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
            {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
            {"names":["no_such_call"],"action":"SCMP_ACT_ALLOW"}]}"#;
        assert_eq!(compile(text, 0).unwrap().len(), 2);
    }

    #[test]
    fn an_allow_default_needs_only_the_action_filters() {
        let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        assert_eq!(compile(text, 0).unwrap().len(), 1);
        assert_eq!(compile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#, 0).unwrap().len(), 1);
    }

    #[test]
    fn malformed_profiles_say_what_is_wrong() {
        for (text, want) in [
            ("{", "not a seccomp profile"),
            (r#"{"syscalls":[]}"#, "defaultAction"),
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "unsupported action"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_BOGUS"}]}"#,
                "syscalls[0]",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0]",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#,
                "unsupported comparison",
            ),
        ] {
            let e = compile(text, 0).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{text}: {e}");
        }
    }

    #[test]
    fn includes_and_excludes_follow_the_capabilities_and_architecture() {
        let admin = caps::Capability::CAP_SYS_ADMIN.bitmask();
        let c = Condition { caps: vec!["CAP_SYS_ADMIN".into()], ..Default::default() };
        assert!(applies(&c, admin, true) && !applies(&c, 0, true));
        assert!(!applies(&c, admin, false) && applies(&c, 0, false));
        let other = Condition { arches: vec!["s390x".into()], ..Default::default() };
        assert!(!applies(&other, 0, true) && applies(&other, 0, false));
        assert!(applies(&Condition { min_kernel: Some("3.0".into()), ..Default::default() }, 0, true));
        assert!(!applies(&Condition { min_kernel: Some("99.0".into()), ..Default::default() }, 0, true));
    }
}

//! Snapshot of a merged tree as seen by programs through a mount: the lines that must be
//! equal between the kernel and the FUSE overlay.

use super::exec::{content_summary, file_type_char, list_xattrs, stat_line};
use super::lower::walk;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn snapshot(root: &Path, dir_nlink: bool) -> Vec<String> {
    let mut lines = Vec::new();
    // Hard-link identity: the first path seen with an inode number names the group, so
    // "b is the same file as a" is compared without comparing inode numbers themselves.
    let mut first_path: BTreeMap<u64, String> = BTreeMap::new();
    let res = walk(root, &mut |p, m| {
        let rel = format!("/{}", p.strip_prefix(root).unwrap_or(p).display());
        let t = file_type_char(m);
        let extra = match t {
            'f' => match fs::read(p) {
                Ok(d) => content_summary(&d),
                Err(e) => format!("read error {e}"),
            },
            'l' => fs::read_link(p).map(|t| format!("-> {}", t.display())).unwrap_or_else(|e| e.to_string()),
            _ => String::new(),
        };
        let group = if t != 'd' && m.nlink() > 1 {
            let g = first_path.entry(m.ino()).or_insert_with(|| rel.clone());
            format!(" same-as={g}")
        } else {
            String::new()
        };
        let xattrs = match list_xattrs(p) {
            Ok(v) => v.join(","),
            Err(e) => format!("listxattr errno {e}"),
        };
        lines.push(format!("{rel} {} {extra}{group} xattrs=[{xattrs}]", stat_line(m, dir_nlink)));
    });
    if let Err(e) = res {
        lines.push(format!("walk error: {e}"));
    }
    lines
}

/// The first few lines where two snapshots differ, for the failure message.
pub fn diff_lines(a_name: &str, a: &[String], b_name: &str, b: &[String]) -> String {
    let mut out = String::new();
    let (mut i, mut j, mut shown) = (0, 0, 0);
    while (i < a.len() || j < b.len()) && shown < 12 {
        let key = |l: &String| l.split(' ').next().unwrap_or("").to_string();
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
                continue;
            }
            (Some(x), Some(y)) if key(x) == key(y) => {
                out += &format!("  {a_name}: {x}\n  {b_name}: {y}\n");
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if key(x) < key(y) => {
                out += &format!("  only {a_name}: {x}\n");
                i += 1;
            }
            (Some(x), None) => {
                out += &format!("  only {a_name}: {x}\n");
                i += 1;
            }
            (_, Some(y)) => {
                out += &format!("  only {b_name}: {y}\n");
                j += 1;
            }
            (None, None) => break,
        }
        shown += 1;
    }
    out
}

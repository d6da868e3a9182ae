//! Snapshot of a merged tree as seen by programs through a mount: the lines that must be
//! equal between the kernel and the FUSE overlay.

use super::exec::{content_summary, file_type_char, list_xattrs, stat_line};
use super::lower::walk;
use std::fs;
use std::path::Path;

pub fn snapshot(root: &Path, dir_nlink: bool) -> Vec<String> {
    // Link counts are compared, hard-link identity (inode numbers) is not: kernel overlayfs
    // without `index` gives a copied-up file and a new link to it different inode numbers
    // until the next mount, a quirk no FUSE driver should have to copy.
    let mut lines = Vec::new();
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
        let xattrs = match list_xattrs(p) {
            Ok(v) => v.join(","),
            Err(e) => format!("listxattr errno {e}"),
        };
        lines.push(format!("{rel} {} {extra} xattrs=[{xattrs}]", stat_line(m, dir_nlink)));
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

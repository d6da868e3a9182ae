//! Map arithmetic for nested user namespaces (pure; unit-tested).
//!
//! A container that joins the keeper gets a user namespace nested in the keeper's. Its map is written relative
//! to the keeper's namespace, and the kernel composes the two: a reader in the caller's namespace sees host IDs
//! in `/proc/PID/uid_map`, one line per line of the nested map. [`relative_to`] turns the run's plan (container
//! IDs → host IDs) into the nested map; [`normalize`] makes two maps comparable however they are split.

use crate::idmap::MapLine;

/// Parses the text of a `/proc/PID/uid_map` or `gid_map` file; None when a line is not three numbers.
pub fn parse(text: &str) -> Option<Vec<MapLine>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            match (f.next()??, f.next()??, f.next()??, f.next()) {
                (inside, outside, count, None) => Some(MapLine { inside, outside, count }),
                _ => None,
            }
        })
        .collect()
}

/// The same mapping with lines sorted by container ID and neighbours that continue each other merged, so that
/// two maps that differ only in how their ranges are split compare equal.
pub fn normalize(map: &[MapLine]) -> Vec<MapLine> {
    let mut lines: Vec<MapLine> = map.iter().copied().filter(|l| l.count > 0).collect();
    lines.sort_by_key(|l| l.inside);
    let mut out: Vec<MapLine> = Vec::with_capacity(lines.len());
    for l in lines {
        match out.last_mut() {
            Some(p)
                if u64::from(p.inside) + u64::from(p.count) == u64::from(l.inside)
                    && u64::from(p.outside) + u64::from(p.count) == u64::from(l.outside) =>
            {
                p.count += l.count
            }
            _ => out.push(l),
        }
    }
    out
}

/// Whether two maps map the same IDs, however their ranges are split.
pub fn same(a: &[MapLine], b: &[MapLine]) -> bool {
    normalize(a) == normalize(b)
}

/// The map to write for a namespace nested in one whose map is `parent` (parent IDs → host IDs) so that the
/// composition is `want` (container IDs → host IDs). Each line lies within one line of `parent`, as the kernel
/// requires. None when `want` names a host ID that `parent` does not map.
pub fn relative_to(want: &[MapLine], parent: &[MapLine]) -> Option<Vec<MapLine>> {
    let mut out = Vec::new();
    for w in want {
        let (ws, we) = (u64::from(w.outside), u64::from(w.outside) + u64::from(w.count));
        let mut covered = 0u64;
        for p in parent {
            let (ps, pe) = (u64::from(p.outside), u64::from(p.outside) + u64::from(p.count));
            let (s, e) = (ws.max(ps), we.min(pe));
            if s < e {
                out.push(MapLine {
                    inside: w.inside + (s - ws) as u32,
                    outside: p.inside + (s - ps) as u32,
                    count: (e - s) as u32,
                });
                covered += e - s;
            }
        }
        // Lines of one map never overlap on either side (the kernel refuses such maps), so this counts each
        // host ID once.
        if covered != u64::from(w.count) {
            return None;
        }
    }
    out.sort_by_key(|l| l.inside);
    Some(out)
}

/// Composes a nested map with its parent's: what the kernel shows a reader outside both. None when a nested
/// line leaves the parent's IDs.
pub fn compose(nested: &[MapLine], parent: &[MapLine]) -> Option<Vec<MapLine>> {
    // Matching the nested lines' parent IDs against the parent's own side is relative_to with the parent's
    // two sides exchanged.
    let swapped: Vec<MapLine> =
        parent.iter().map(|p| MapLine { inside: p.outside, outside: p.inside, count: p.count }).collect();
    relative_to(nested, &swapped).map(|m| normalize(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::{layout, IdRange};

    fn line(inside: u32, outside: u32, count: u32) -> MapLine {
        MapLine { inside, outside, count }
    }

    #[test]
    fn proc_maps_parse_and_bad_lines_are_refused() {
        let text = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(parse(text), Some(vec![line(0, 1000, 1), line(1, 100000, 65536)]));
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("0 1000"), None);
        assert_eq!(parse("0 1000 1 4"), None);
        assert_eq!(parse("0 x 1"), None);
    }

    #[test]
    fn normalize_merges_continuing_lines_only() {
        let split = [line(5, 105, 5), line(0, 100, 5), line(10, 300, 1)];
        assert_eq!(normalize(&split), vec![line(0, 100, 10), line(10, 300, 1)]);
        // Contiguous inside but not outside: kept apart.
        assert_eq!(normalize(&[line(0, 100, 1), line(1, 200, 1)]).len(), 2);
    }

    #[test]
    fn auto_plan_nested_in_the_shared_namespace_is_the_identity_split_at_its_lines() {
        let subs = [IdRange { start: 100000, count: 65536 }];
        let shared = layout(0, 1000, &subs);
        let nested = relative_to(&shared, &shared).unwrap();
        assert_eq!(nested, vec![line(0, 0, 1), line(1, 1, 65536)]);
    }

    #[test]
    fn keep_id_nested_composes_to_the_hosts_keep_id_layout() {
        let subs = [IdRange { start: 100000, count: 65536 }];
        let shared = layout(0, 1000, &subs);
        let want = layout(1000, 1000, &subs);
        let nested = relative_to(&want, &shared).unwrap();
        assert_eq!(nested, vec![line(0, 1, 1000), line(1000, 0, 1), line(1001, 1001, 64536)]);
        assert_eq!(compose(&nested, &shared).unwrap(), normalize(&want));
    }

    #[test]
    fn a_host_id_the_parent_lacks_cannot_be_nested() {
        let shared = layout(0, 1000, &[IdRange { start: 100000, count: 1000 }]);
        let want = layout(0, 1000, &[IdRange { start: 100000, count: 65536 }]);
        assert_eq!(relative_to(&want, &shared), None);
        assert_eq!(relative_to(&[line(0, 2000, 1)], &shared), None);
    }

    /// Random subordinate ranges (1 to 4 per user, possibly touching each other) and a random kept ID: the
    /// nested map always composes back to the plan, and every nested line falls inside one parent line. The
    /// generator never produces overlapping ranges (the kernel refuses those maps), ranges reaching the top of
    /// the ID space, or more than 340 lines (the kernel's limit).
    #[test]
    fn randomized_plans_compose_back_through_the_shared_namespace() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(bound)) as u32
        };
        for _ in 0..2000 {
            let host = 1000 + next(5000);
            let mut start = 100_000 + next(1000);
            let mut subs = Vec::new();
            for _ in 0..1 + next(4) {
                let count = 1 + next(70_000);
                subs.push(IdRange { start, count });
                start += count + next(3) * next(50_000);
            }
            let shared = layout(0, host, &subs);
            let total: u32 = subs.iter().map(|r| r.count).sum();
            let keep = if next(2) == 0 { 0 } else { next(total + 1) };
            let want = layout(keep, host, &subs);
            let nested = relative_to(&want, &shared).expect("a plan from the same ranges always nests");
            for n in &nested {
                let inside_one =
                    shared.iter().any(|p| n.outside >= p.inside && n.outside + n.count <= p.inside + p.count);
                assert!(inside_one, "{n:?} spans lines of {shared:?}");
            }
            assert_eq!(compose(&nested, &shared).unwrap(), normalize(&want), "subs {subs:?} keep {keep}");
        }
    }
}

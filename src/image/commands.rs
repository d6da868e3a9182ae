//! The store's commands: `import`, `images`, `rmi`, `prune` (the edge: they print, and return exit codes).

use super::import;
use super::store::Store;
use crate::cli::{ImagesArgs, ImportArgs, RmiArgs, StoreArgs};

fn open(args: &StoreArgs) -> Result<Store, i32> {
    Store::open(args.store.clone()).map_err(|e| {
        eprintln!("burrow: {e}");
        125
    })
}

pub fn import(args: &ImportArgs) -> i32 {
    let store = match open(&args.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match import::import(&store, &args.path, args.name.as_deref()) {
        Ok(images) => {
            if !args.quiet {
                for i in images {
                    println!("Loaded image: {} ({})", i.reference, i.id.short());
                }
            }
            0
        }
        Err(e) => {
            eprintln!("burrow: import {}: {e}", args.path.display());
            125
        }
    }
}

pub fn images(args: &ImagesArgs) -> i32 {
    let store = match open(&args.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let records = store.records();
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            if seen.insert(r.config.clone()) {
                println!("{}", if args.no_trunc { r.config.to_string() } else { r.config.short() });
            }
        }
        return 0;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut rows = vec![["REPOSITORY".to_string(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
    for r in &records {
        let (repo, tag) = match super::Reference::parse(&r.reference) {
            Ok(reference) => (reference.name(), reference.tag.clone().unwrap_or_else(|| "<none>".into())),
            Err(_) => (r.reference.clone(), "<none>".into()),
        };
        let created = store
            .blob(&r.config)
            .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
            .and_then(|v| v.get("created").and_then(|c| c.as_str()).and_then(parse_rfc3339))
            .unwrap_or(r.stored);
        let size: u64 = r.layers.iter().filter_map(|d| store.layer_info(d)).map(|i| i.size).sum();
        let id = if args.no_trunc { r.config.to_string() } else { r.config.short() };
        rows.push([repo, tag, id, ago(now.saturating_sub(created)), human(size)]);
    }
    let widths: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    0
}

pub fn rmi(args: &RmiArgs) -> i32 {
    let mut store = match open(&args.store) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.remove_images(&args.images) {
        Ok(removed) => {
            for n in &removed.names {
                println!("Untagged: {n}");
            }
            if removed.layers > 0 {
                println!("Deleted {} layers ({})", removed.layers, human(removed.bytes));
            }
            0
        }
        Err(e) => {
            eprintln!("burrow: rmi: {e}");
            // podman: 1 for a missing image, 2 for one in use.
            match e {
                super::StoreError::NotFound(_) => 1,
                super::StoreError::InUse { .. } => 2,
                _ => 125,
            }
        }
    }
}

pub fn prune(args: &StoreArgs) -> i32 {
    let mut store = match open(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.prune() {
        Ok(removed) => {
            println!("Deleted {} layers ({}) and {} blobs", removed.layers, human(removed.bytes), removed.blobs);
            0
        }
        Err(e) => {
            eprintln!("burrow: prune: {e}");
            125
        }
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.3} {}", units[i]).replace(".000 ", " ")
    }
}

fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 14 => (s / 86400, "day"),
        s if s < 86400 * 60 => (s / (86400 * 7), "week"),
        s if s < 86400 * 730 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.678Z`, offsets honoured).
fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let rest = s.get(19..)?.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest.as_bytes().first() {
        Some(b'+') | Some(b'-') => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600 + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => 0,
    };
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + sec - offset).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_like_podman() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.123456789Z"), Some(1704164645));
        assert_eq!(parse_rfc3339("2024-01-02T04:04:05+01:00"), Some(1704164645));
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(ago(30), "Less than a minute ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(ago(86400), "1 day ago");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1_500_000), "1.500 MB");
        assert_eq!(human(2_000_000), "2 MB");
    }
}

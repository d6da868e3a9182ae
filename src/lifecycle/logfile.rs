//! The log of a detached container, in the line format of podman's `k8s-file` log driver (the CRI log
//! format conmon writes): one record per line of output,
//!
//! ```text
//! 2026-12-04T19:30:01.123456789Z stdout F hello
//! 2026-12-04T19:30:01.123502000Z stderr P no newline yet
//! ```
//!
//! time (RFC 3339, UTC, nanoseconds), the stream, `F` for a full line or `P` for a partial one (the output
//! had no newline there yet: the next record continues it), then the bytes without the newline. `burrow logs`
//! sends each stream back to its own descriptor, so `logs CTR 2>/dev/null` shows stdout alone. Records never
//! straddle the rotation to `log.1`.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

/// The log's cap: past it `log` becomes `log.1` (replacing the older one) and a new `log` starts.
pub const LOG_CAP: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The writer: the monitor's side.
pub struct Log {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

impl Log {
    pub fn open(path: PathBuf) -> Log {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok();
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        Log { path, file, size }
    }

    /// Appends what `stream` produced: one record per line, the last one partial when `bytes` does not end
    /// with a newline.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, full, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            let mut record = Vec::with_capacity(line.len() + 40);
            record.extend_from_slice(now.as_bytes());
            record.push(b' ');
            record.extend_from_slice(stream.name().as_bytes());
            record.extend_from_slice(if full { b" F " } else { b" P " });
            record.extend_from_slice(line);
            record.push(b'\n');
            self.append(&record);
            rest = next;
        }
    }

    fn append(&mut self, record: &[u8]) {
        if self.size > 0 && self.size + record.len() as u64 > LOG_CAP {
            let _ = std::fs::rename(&self.path, self.path.with_extension("1"));
            *self = Log::open(self.path.clone());
        }
        if let Some(f) = &mut self.file {
            if f.write_all(record).is_ok() {
                self.size += record.len() as u64;
            }
        }
    }
}

/// One record read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a [u8],
    pub stream: Stream,
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its newline). A line that is not a record (a log of an older burrow) is
/// shown as a full stdout line.
fn parse(line: &[u8]) -> Record<'_> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (time, stream, tag) = (parts.next(), parts.next(), parts.next());
    let stream = match stream {
        Some(b"stdout") => Some(Stream::Stdout),
        Some(b"stderr") => Some(Stream::Stderr),
        _ => None,
    };
    match (time, stream, tag) {
        (Some(time), Some(stream), Some(tag @ (b"F" | b"P"))) => {
            Record { time, stream, full: tag == b"F", content: parts.next().unwrap_or_default() }
        }
        _ => Record { time: b"", stream: Stream::Stdout, full: true, content: line },
    }
}

/// The records of `bytes`, and how many bytes they took: a last line without its newline (the monitor may be
/// writing it) is left for the next read.
pub fn records(bytes: &[u8]) -> (Vec<Record<'_>>, usize) {
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let records = bytes[..whole].split_inclusive(|b| *b == b'\n').map(|l| parse(&l[..l.len() - 1])).collect();
    (records, whole)
}

/// The records of the last `n` lines of output, all of them without `n`. A line is one or more `P` records
/// and the `F` that ends it, of one stream (records of the other stream may come between them); a partial
/// last line counts as a line.
pub fn tail<'a, 'b>(records: &'a [Record<'b>], n: Option<usize>) -> Vec<&'a Record<'b>> {
    let Some(n) = n else { return records.iter().collect() };
    // The line each record belongs to, numbered in order of their first record.
    let (mut lines, mut open) = (0usize, [None::<usize>; 2]);
    let line_of: Vec<usize> = records
        .iter()
        .map(|r| {
            let slot = &mut open[r.stream as usize];
            let line = slot.unwrap_or_else(|| {
                lines += 1;
                lines - 1
            });
            *slot = (!r.full).then_some(line);
            line
        })
        .collect();
    let first = lines.saturating_sub(n);
    records.iter().zip(line_of).filter(|(_, l)| *l >= first).map(|(r, _)| r).collect()
}

/// Writes records to the caller's stdout and stderr (each stream to its own), with their times when asked.
pub fn emit<'a, 'b: 'a>(records: impl IntoIterator<Item = &'a Record<'b>>, timestamps: bool) -> std::io::Result<()> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for r in records {
        let w: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if timestamps && !r.time.is_empty() {
            w.write_all(r.time)?;
            w.write_all(b" ")?;
        }
        w.write_all(r.content)?;
        if r.full {
            w.write_all(b"\n")?;
        }
    }
    out.flush()?;
    err.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(chunks: &[(Stream, &[u8])]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path().join("log"));
        for (s, b) in chunks {
            log.write(*s, b);
        }
        std::fs::read(dir.path().join("log")).unwrap()
    }

    #[test]
    fn chunks_become_records_per_line() {
        let bytes = written(&[(Stream::Stdout, b"a\nb"), (Stream::Stderr, b"oops\n"), (Stream::Stdout, b"c\n")]);
        let (recs, _) = records(&bytes);
        let got: Vec<(Stream, bool, &[u8])> = recs.iter().map(|r| (r.stream, r.full, r.content)).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, true, &b"a"[..]),
                (Stream::Stdout, false, &b"b"[..]),
                (Stream::Stderr, true, &b"oops"[..]),
                (Stream::Stdout, true, &b"c"[..]),
            ]
        );
        assert!(recs.iter().all(|r| r.time.ends_with(b"Z") && r.time.len() == 30), "{:?}", recs[0].time);
    }

    #[test]
    fn tail_counts_lines_not_records() {
        let bytes = written(&[(Stream::Stdout, b"1\n2"), (Stream::Stdout, b"x\n3\n")]);
        let (recs, _) = records(&bytes);
        let text = |rs: Vec<&Record>| rs.iter().map(|r| r.content).collect::<Vec<_>>().concat();
        assert_eq!(text(tail(&recs, Some(1))), b"3");
        assert_eq!(text(tail(&recs, Some(2))), b"2x3");
        assert_eq!(text(tail(&recs, Some(9))), b"12x3");
        assert!(tail(&recs, Some(0)).is_empty());
        // A partial stdout line continued after a stderr line is still one line.
        let mixed = written(&[(Stream::Stdout, b"1\npa"), (Stream::Stderr, b"e\n"), (Stream::Stdout, b"rt\n")]);
        let (recs, _) = records(&mixed);
        assert_eq!(text(tail(&recs, Some(2))), b"paert");
        assert_eq!(text(tail(&recs, Some(1))), b"e");
        let open = written(&[(Stream::Stdout, b"1\n2\npart")]);
        let (recs, _) = records(&open);
        assert_eq!(text(tail(&recs, Some(1))), b"part");
        assert_eq!(text(tail(&recs, Some(2))), b"2part");
    }

    #[test]
    fn a_line_of_an_older_log_is_plain_stdout() {
        assert_eq!(
            parse(b"just text"),
            Record { time: b"", stream: Stream::Stdout, full: true, content: b"just text" }
        );
        assert_eq!(parse(b"t stdout F "), Record { time: b"t", stream: Stream::Stdout, full: true, content: b"" });
    }
}

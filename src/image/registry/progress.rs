//! Progress of a pull: one bar per layer on a terminal (indicatif, on stderr), nothing at all otherwise
//! (logs and CI output stay clean; the summary line is the caller's).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};

/// The bars of one pull; inert when stderr is not a terminal.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// Bars that draw nothing (`--quiet`).
    pub fn inert() -> Progress {
        Progress { multi: None }
    }

    /// A bar for one blob of `size` bytes, labelled with its short digest.
    pub fn bar(&self, label: &str, size: u64) -> Bar {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(label.to_string());
            b
        });
        Bar { bar }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// One layer's bar (or nothing).
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// Wraps a reader so that every byte read advances the bar.
    pub fn wrap<R: Read>(&self, inner: R) -> BarReader<R> {
        BarReader { inner, bar: self.bar.clone() }
    }

    pub fn done(&self, msg: &'static str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(msg);
        }
    }

    pub fn restart(&self) {
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_message("retrying");
        }
    }
}

pub struct BarReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for BarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

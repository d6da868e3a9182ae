//! Where the handles that the node table lets go of are closed: in bulk, off the request
//! threads.
//!
//! The last `close` of a removed file's handle is where the upper filesystem frees the file
//! (ext4 truncates it and frees its inode; on ext4 without a journal mounted `-o discard`, it
//! also waits for the discard of the file's blocks). The kernel's `FORGET` that releases the
//! handle comes right after the `UNLINK`, so during `rm -rf` each close ran on one request
//! thread while the other unlinked the next file of the same directory, and the delete was
//! slower than on the path-based server, which freed the file inside `unlinkat`. Handing each
//! handle to a closer thread at once was slower still (a wake-up per file); closing them in
//! bulk, every few milliseconds, is faster than both (docs/benchmarks-overlay-speed.md,
//! "Delete: handles closed in bulk").
//!
//! A sweeper thread closes what is pending [`DELAY`] after the first handle came, so a removed
//! file is freed at most that much later than the kernel's `FORGET` (a lone `rm` of a big file
//! gives its space back at once, for practical purposes), and it sleeps while nothing is
//! pending. A request thread that brings the pending handles to [`BATCH`] closes them itself:
//! the sweeper cannot fall behind by more than that many descriptors.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub(crate) type Closing = Vec<Arc<OwnedFd>>;

/// Pending handles that make the request thread adding the last one close them all; the
/// descriptor table is sized for them (`fuse::mount_and_serve_with`).
pub(crate) const BATCH: usize = 1024;
/// The longest a handle waits for its batch before the sweeper closes it.
const DELAY: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Pending {
    fds: Closing,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Closer {
    shared: Arc<Shared>,
    /// Whether the sweeper runs: started with the first handle to close (not at start, where
    /// a second thread would make the growth of the descriptor table wait for an RCU grace
    /// period, see `fuse::presize_fd_table`). Without it every handle is closed at once.
    sweeper: OnceLock<bool>,
}

impl Closer {
    pub(crate) fn new() -> Self {
        Closer { shared: Arc::default(), sweeper: OnceLock::new() }
    }

    /// Closes `fds` now or with the next batch (at most [`DELAY`] from now).
    pub(crate) fn close(&self, fds: Closing) {
        let running = *self.sweeper.get_or_init(|| {
            let s = self.shared.clone();
            std::thread::Builder::new().name("overlay-closer".into()).spawn(move || sweep(&s)).is_ok()
        });
        if !running {
            return drop(fds);
        }
        let mut p = self.shared.lock();
        let first = p.fds.is_empty();
        p.fds.extend(fds);
        if p.fds.len() >= BATCH {
            let batch = std::mem::take(&mut p.fds);
            drop(p);
            drop(batch);
        } else if first {
            drop(p);
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        let mut p = self.shared.lock();
        p.stop = true;
        let rest = std::mem::take(&mut p.fds);
        drop(p);
        self.shared.wake.notify_one();
        drop(rest);
    }
}

/// The sweeper: waits for a first pending handle, gives its batch [`DELAY`] to fill up (or be
/// closed by a request thread), then closes whatever is pending.
fn sweep(shared: &Shared) {
    loop {
        let mut p = shared.lock();
        while p.fds.is_empty() && !p.stop {
            p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.stop {
            return;
        }
        drop(p);
        std::thread::sleep(DELAY);
        let batch = std::mem::take(&mut shared.lock().fds);
        drop(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    fn handle() -> Arc<OwnedFd> {
        Arc::new(rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap())
    }

    #[test]
    fn a_full_batch_is_closed_at_once_and_a_partial_one_by_the_sweeper() {
        let closer = Closer::new();
        let one = handle();
        closer.close(vec![one.clone()]);
        assert_eq!(closer.sweeper.get(), Some(&true), "the sweeper did not start");
        let mut tries = 0;
        while Arc::strong_count(&one) > 1 {
            tries += 1;
            assert!(tries < 500, "the sweeper never closed the pending handle");
            std::thread::sleep(Duration::from_millis(2));
        }
        // A batch reaching BATCH is closed by the caller, without waiting for the sweeper.
        // (The sweeper has nothing pending now: it is asleep until the next first handle.)
        let many: Vec<_> = (0..BATCH).map(|_| handle()).collect();
        closer.close(many.clone());
        assert!(many.iter().all(|h| Arc::strong_count(h) == 1), "a full batch stayed open");
    }
}

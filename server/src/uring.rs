//! The same bytes sent to many sockets with one system call: each thread's io_uring (Linux).
//!
//! A channel's fan-out writes one frame to every subscriber. One `send` per socket costs a system
//! call each; queued on an io_uring, a few hundred sends go in with one `io_uring_enter` and run
//! there, each non-blocking (`MSG_DONTWAIT`: a full socket answers `EAGAIN` at once, as a
//! non-blocking write does). On this kind of machine that is ~1.3× the sends per CPU-second of one
//! write per socket (`docs/server.md`). Where the kernel has no io_uring (or a sandbox forbids it),
//! or the server is told not to use it, [`send_all`] says so and the caller writes each socket.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

/// Sends per `io_uring_enter` (the ring's size).
pub(crate) const ENTRIES: usize = 256;

/// Set when the server is told not to use io_uring.
static OFF: AtomicBool = AtomicBool::new(false);

/// A thread's ring: made at its first use; gone for good if it could not be made or failed.
enum Ring {
    Untried,
    Ready(Box<IoUring>),
    Unavailable,
}

thread_local! {
    static RING: RefCell<Ring> = const { RefCell::new(Ring::Untried) };
}

/// Fan-out writes each socket itself from now on (`fanout_io_uring = false`).
pub(crate) fn disable() {
    OFF.store(true, Ordering::Relaxed);
}

/// Whether this thread can send through its ring (making it if it was not tried yet).
pub(crate) fn available() -> bool {
    if OFF.load(Ordering::Relaxed) {
        return false;
    }
    RING.with(|cell| {
        let Ok(mut ring) = cell.try_borrow_mut() else { return false };
        if matches!(*ring, Ring::Untried) {
            *ring = match make() {
                Ok(r) => Ring::Ready(Box::new(r)),
                Err(e) => {
                    tracing::info!(error = %e, "no io_uring on this thread: fan-out writes each socket");
                    Ring::Unavailable
                }
            };
        }
        matches!(*ring, Ring::Ready(_))
    })
}

/// A ring whose kernel (or sandbox) does the sends: one that only half supports io_uring must not
/// fail every send and cut every subscriber.
fn make() -> io::Result<IoUring> {
    let ring = IoUring::new(ENTRIES as u32)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::Send::CODE) {
        return Err(io::Error::other("the kernel's io_uring has no send"));
    }
    Ok(ring)
}

/// Sends `bytes` to every socket of `fds` without waiting for any, and gives each one's result in
/// `sent`: the bytes it took (maybe fewer than all), or a negated `errno` (`-EAGAIN`: no room). False
/// when this thread has no ring: nothing was sent. The sockets must stay open for the call.
///
/// If the ring fails midway (it should not), the sockets it cannot vouch for get `-EIO`, so that
/// their sessions end and their clients resume from their cursors, and the thread stops using it.
pub(crate) fn send_all(fds: &[RawFd], bytes: &Bytes, sent: &mut Vec<i32>) -> bool {
    let Ok(len) = u32::try_from(bytes.len()) else { return false };
    if !available() {
        return false;
    }
    RING.with(|cell| {
        let Ok(mut cell) = cell.try_borrow_mut() else { return false };
        sent.clear();
        sent.resize(fds.len(), -libc::EIO);
        let failed = {
            let Ring::Ready(ring) = &mut *cell else { return false };
            fds.chunks(ENTRIES)
                .enumerate()
                .find_map(|(n, chunk)| send_chunk(ring, chunk, n * ENTRIES, bytes.as_ptr(), len, sent).err())
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e, "the fan-out's io_uring failed: this thread writes each socket now");
            // A send the kernel may still hold reads these bytes: they stay allocated for good.
            std::mem::forget(bytes.clone());
            *cell = Ring::Unavailable;
        }
        true
    })
}

/// Queues one send per socket of `fds` (at most [`ENTRIES`]), submits them and waits for every
/// completion, writing each result into `sent` at `base` + its place.
fn send_chunk(
    ring: &mut IoUring,
    fds: &[RawFd],
    base: usize,
    ptr: *const u8,
    len: u32,
    sent: &mut [i32],
) -> io::Result<()> {
    {
        let mut sq = ring.submission();
        for (i, &fd) in fds.iter().enumerate() {
            let send = opcode::Send::new(types::Fd(fd), ptr, len)
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .user_data((base + i) as u64);
            // SAFETY: the bytes at `ptr` and every socket outlive the sends: this function returns
            // only once each has completed, and if the ring fails the caller keeps the bytes forever.
            unsafe { sq.push(&send) }.map_err(|_| io::Error::other("the submission queue is full"))?;
        }
    }
    let mut left = fds.len();
    while left > 0 {
        match ring.submit_and_wait(left) {
            Ok(_) => {}
            // Interrupted, or completions to take first: take them and go on.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        for done in ring.completion() {
            if let Some(slot) = usize::try_from(done.user_data()).ok().and_then(|i| sent.get_mut(i)) {
                *slot = done.result();
                left = left.saturating_sub(1);
            }
        }
    }
    Ok(())
}

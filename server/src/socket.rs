//! A session's socket after the WebSocket handshake, and the [`Sink`] its channel writes to.
//!
//! A plain TCP socket is shared: the session reads it, and whoever holds the sink's lock writes it:
//! the session (its own messages) or its channel's fan-out, which writes each frame's bytes (framed
//! once for every subscriber) with a non-blocking write straight from the fan-out task. No session
//! task wakes for a channel frame the socket takes at once; only what the socket cannot take yet is
//! queued, and the session is woken to write it when the socket has room, within the send timeout.
//! An idle connection holds no read or write buffer, and its session no timer: the [`Sessions`]
//! ticker pings every live socket in its turn, ends one whose token expired or that did not answer
//! its last ping, and closes them all when the server stops.
//!
//! A TLS socket (each connection encrypts its own bytes) is written by its session only: the fan-out
//! queues the frames and wakes it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::Limits;
use crate::hub::{Frame, mono_ms};
use crate::metrics::Metrics;
use crate::protocol::close;
use crate::uring;
use crate::ws::{self, Bad, Incoming, Reader};

/// Why a write or read ended the session.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The peer is gone or the socket failed.
    Gone,
    /// The peer did not take what was written within the send timeout.
    Late,
}

/// Writes at most this many buffers per system call.
const IOV: usize = 64;

/// What waits to be written to a socket, and the channel versions it has.
#[derive(Debug, Default)]
struct Out {
    /// Bytes not yet written, in order (none, and no allocation, while the socket keeps up).
    queue: Queue,
    /// The last channel version written or queued.
    sent: i64,
    /// Takes channel frames (after its initial sync).
    live: bool,
    /// The session is to close with this code and reason (asked by the hub or the fan-out). Boxed:
    /// set once, at the end, so a live session keeps one word for it rather than three.
    end: Option<Box<(u16, &'static str)>>,
    /// A write failed: the session ends at its next look.
    broken: bool,
    /// When the token runs out ([`mono_ms`]; 0 until the session is registered).
    expires: u64,
    /// When the next ping is due ([`mono_ms`]).
    ping_due: u64,
    /// A ping went out and no pong came back yet.
    awaiting_pong: bool,
}

/// A sink's bytes waiting for the socket: one empty word while there are none (nearly always).
/// Boxed on purpose: a `VecDeque` is four words in every sink, this one word.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
struct Queue(Option<Box<VecDeque<Bytes>>>);

impl Queue {
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.0.iter().flat_map(|q| q.iter())
    }

    fn extend(&mut self, bytes: impl IntoIterator<Item = Bytes>) {
        let mut bytes = bytes.into_iter().peekable();
        if bytes.peek().is_some() {
            self.0.get_or_insert_default().extend(bytes);
        }
    }

    #[cfg(test)]
    fn push_back(&mut self, b: Bytes) {
        self.extend([b]);
    }

    /// Drops `n` bytes from the front (they were written).
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let q = self.0.as_mut().expect("written bytes were queued");
            let front = q.front_mut().expect("written bytes were queued");
            if front.len() <= n {
                n -= front.len();
                q.pop_front();
                if q.is_empty() {
                    self.0 = None;
                }
            } else {
                bytes::Buf::advance(front, n);
                n = 0;
            }
        }
    }

    /// Everything queued, leaving none.
    fn take(&mut self) -> VecDeque<Bytes> {
        self.0.take().map(|q| *q).unwrap_or_default()
    }
}

impl Out {
    /// The session is to close with `code` and `reason`, unless it already is (the first reason stays).
    fn end_with(&mut self, code: u16, reason: &'static str) {
        self.end.get_or_insert_with(|| Box::new((code, reason)));
    }

    /// The code and reason the session is to close with, if it is.
    fn ended(&self) -> Option<(u16, &'static str)> {
        self.end.as_deref().copied()
    }
}

/// The writing side of a session's socket.
#[derive(Debug)]
pub(crate) struct Sink {
    /// The plain socket, written by whoever holds `out`; `None` for TLS (the session writes).
    tcp: Option<TcpStream>,
    out: Mutex<Out>,
    /// Wakes the session: something is queued, or it is to close.
    waker: AtomicWaker,
}

/// What the session is to do about its sink.
pub(crate) enum SinkEvent {
    /// Close with this code and reason.
    End(u16, &'static str),
    /// Write what is queued.
    Flush,
}

/// The close of a subscriber that fell too far behind its channel.
pub(crate) const SLOW: (u16, &str) =
    (close::SLOW_CONSUMER, "too far behind the channel: reconnect to resume from your cursor");

impl Sink {
    /// Writes `out`'s queue to `tcp` until it is empty or the socket is full.
    fn write_queue(tcp: &TcpStream, out: &mut Out) {
        while !out.queue.is_empty() && !out.broken {
            let written = {
                let mut io = [IoSlice::new(&[]); IOV];
                let mut n = 0;
                for (slot, b) in io.iter_mut().zip(out.queue.iter()) {
                    *slot = IoSlice::new(b);
                    n += 1;
                }
                tcp.try_write_vectored(&io[..n])
            };
            match written {
                Ok(0) => out.broken = true,
                Ok(n) => out.queue.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => out.broken = true,
            }
        }
    }

    /// Queues `bytes` and, on a plain socket that had nothing waiting, writes what it takes now.
    /// True if something is left waiting for the session to write.
    fn put(&self, out: &mut Out, bytes: impl Iterator<Item = Bytes>) -> bool {
        let was_empty = out.queue.is_empty();
        out.queue.extend(bytes);
        if let (Some(tcp), true) = (&self.tcp, was_empty) {
            Self::write_queue(tcp, out);
        }
        !out.queue.is_empty() || out.broken
    }

    /// The channel's `frames` (in version order) a subscriber is to get now: none while it is in
    /// its initial sync or ending. A frame it needs that the channel no longer holds (newer than its
    /// last, at most `evicted`) cuts it off.
    fn fresh<'f>(
        &self,
        out: &mut Out,
        frames: &'f [Arc<Frame>],
        evicted: i64,
        metrics: &Metrics,
    ) -> &'f [Arc<Frame>] {
        if !out.live || out.end.is_some() || out.broken {
            return &[];
        }
        if out.sent < evicted {
            Self::cut(out, metrics);
            self.waker.wake();
            return &[];
        }
        let sent = out.sent;
        frames.iter().position(|f| f.version > sent).map_or(&[][..], |i| &frames[i..])
    }

    /// After a write to a subscriber: more than `capacity` buffers waiting cut it off; the session
    /// is woken if something is left for it.
    fn settle(&self, mut out: MutexGuard<'_, Out>, capacity: usize, metrics: &Metrics) {
        let waiting = !out.queue.is_empty() || out.broken;
        if out.queue.len() > capacity {
            Self::cut(&mut out, metrics);
        }
        drop(out);
        if waiting {
            self.waker.wake();
        }
    }

    /// Gives a subscriber its channel's `frames` (in version order) that it does not have yet,
    /// unless it is still in its initial sync ([`fresh`](Self::fresh)); more than `capacity`
    /// frames waiting cut it off. Returns how many frames it was given.
    pub(crate) fn offer(
        &self,
        frames: &[Arc<Frame>],
        evicted: i64,
        capacity: usize,
        metrics: &Metrics,
    ) -> usize {
        let mut out = self.out.lock().expect("sink lock");
        let new = self.fresh(&mut out, frames, evicted, metrics);
        self.deliver(out, new, capacity, metrics)
    }

    /// Writes (or queues) `new`, the frames a subscriber is to get, and counts them.
    fn deliver(
        &self,
        mut out: MutexGuard<'_, Out>,
        new: &[Arc<Frame>],
        capacity: usize,
        metrics: &Metrics,
    ) -> usize {
        let Some(last) = new.last() else { return 0 };
        out.sent = last.version;
        self.put(&mut out, new.iter().map(|f| f.wire.clone()));
        self.settle(out, capacity, metrics);
        count(new, 1, metrics);
        new.len()
    }

    /// Cuts off a subscriber too far behind (counted once, whoever finds it first).
    fn cut(out: &mut Out, metrics: &Metrics) {
        if out.end.is_none() {
            metrics.slow_consumers.inc();
            out.end_with(SLOW.0, SLOW.1);
        }
    }

    /// [`cut`](Self::cut), from the session: its socket did not take a write in time.
    pub(crate) fn cut_off(&self, metrics: &Metrics) -> (u16, &'static str) {
        let mut out = self.out.lock().expect("sink lock");
        Self::cut(&mut out, metrics);
        out.ended().expect("just set")
    }

    /// Starts taking channel frames after version `sent` (the session's initial sync ended there).
    pub(crate) fn go_live(&self, sent: i64) {
        let mut out = self.out.lock().expect("sink lock");
        out.sent = out.sent.max(sent);
        out.live = true;
    }

    /// Closes the session with `code` and `reason` (at its next look).
    pub(crate) fn end(&self, code: u16, reason: &'static str) {
        self.out.lock().expect("sink lock").end_with(code, reason);
        self.waker.wake();
    }

    /// Whether the session is to close or to write what waits; else registers to be woken when it is.
    pub(crate) fn poll_event(&self, cx: &mut Context<'_>) -> Poll<SinkEvent> {
        self.waker.register(cx.waker());
        let out = self.out.lock().expect("sink lock");
        if let Some((code, reason)) = out.ended() {
            Poll::Ready(SinkEvent::End(code, reason))
        } else if out.broken || !out.queue.is_empty() {
            Poll::Ready(SinkEvent::Flush)
        } else {
            Poll::Pending
        }
    }

    /// The client answered the server's ping.
    pub(crate) fn pong(&self) {
        self.out.lock().expect("sink lock").awaiting_pong = false;
    }

    /// The ticker's look at a live session at `now`: ends it if its token expired or its last ping
    /// went unanswered, else pings it when its ping is due (`every`: ping interval, 0 for none).
    fn tick(&self, now: u64, every: u64, metrics: &Metrics) {
        let mut out = self.out.lock().expect("sink lock");
        if !out.live || out.end.is_some() || out.broken {
            return;
        }
        if now >= out.expires {
            out.end_with(close::UNAUTHORIZED, "token expired");
        } else if every > 0 && now >= out.ping_due {
            if out.awaiting_pong {
                metrics.slow_consumers.inc();
                out.end_with(
                    close::SLOW_CONSUMER,
                    "no answer to the server's ping: reconnect to resume from your cursor",
                );
            } else {
                out.awaiting_pong = true;
                out.ping_due = now + every;
                if !self.put(&mut out, std::iter::once(Bytes::from_static(ws::EMPTY_PING))) {
                    return;
                }
            }
        } else {
            return;
        }
        drop(out);
        self.waker.wake();
    }
}

/// Counts `sinks` deliveries of each of `frames`, written now.
fn count(frames: &[Arc<Frame>], sinks: usize, metrics: &Metrics) {
    metrics.deliveries.add((frames.len() * sinks) as u64);
    for f in frames {
        metrics.fanout_latency.observe_n(f.published.elapsed(), sinks as u64);
    }
}

/// Gives each of `sinks` the channel's `frames` it does not have yet, as [`Sink::offer`] does. The
/// plain sockets that lack exactly `frames` and have nothing waiting (nearly all of them, as a rule)
/// are sent `wire` (the frames' bytes together, [`joined`] once per round by the caller), with one
/// system call per [`uring::ENTRIES`] sockets where the thread has an io_uring; each stays locked
/// until its send is done, so nothing comes between.
pub(crate) fn offer_all(
    sinks: &[Arc<Sink>],
    frames: &[Arc<Frame>],
    wire: &Bytes,
    evicted: i64,
    capacity: usize,
    metrics: &Metrics,
) {
    offer_all_via(uring::available(), sinks, frames, wire, evicted, capacity, metrics);
}

/// [`offer_all`], through the thread's io_uring if `ring`, else with a write per socket.
fn offer_all_via(
    ring: bool,
    sinks: &[Arc<Sink>],
    frames: &[Arc<Frame>],
    wire: &Bytes,
    evicted: i64,
    capacity: usize,
    metrics: &Metrics,
) {
    let Some(last) = frames.last() else { return };
    if !ring {
        for sink in sinks {
            sink.offer(frames, evicted, capacity, metrics);
        }
        return;
    }
    let mut sent = Vec::with_capacity(uring::ENTRIES);
    let mut fds = Vec::with_capacity(uring::ENTRIES);
    for group in sinks.chunks(uring::ENTRIES) {
        let mut held: Vec<(&Sink, MutexGuard<'_, Out>)> = Vec::with_capacity(group.len());
        fds.clear();
        for sink in group {
            let mut out = sink.out.lock().expect("sink lock");
            let new = sink.fresh(&mut out, frames, evicted, metrics);
            match &sink.tcp {
                _ if new.is_empty() => {}
                Some(tcp) if new.len() == frames.len() && out.queue.is_empty() => {
                    out.sent = last.version;
                    fds.push(std::os::fd::AsRawFd::as_raw_fd(tcp));
                    held.push((sink, out));
                }
                _ => {
                    sink.deliver(out, new, capacity, metrics);
                }
            }
        }
        if held.is_empty() {
            continue;
        }
        if uring::send_all(&fds, wire, &mut sent) {
            for ((_, out), &sent) in held.iter_mut().zip(&sent) {
                match sent {
                    n if n as usize == wire.len() => {}
                    // What the socket did not take waits, a frame a buffer as ever (the channel's
                    // buffer counts them).
                    n if n > 0 => out.queue.extend(unsent(frames, n as usize)),
                    n if n == -libc::EAGAIN => out.queue.extend(unsent(frames, 0)),
                    _ => out.broken = true,
                }
            }
        } else {
            // The thread's ring failed before: each socket written as ever.
            for (sink, out) in &mut held {
                sink.put(out, frames.iter().map(|f| f.wire.clone()));
            }
        }
        let n = held.len();
        for (sink, out) in held {
            sink.settle(out, capacity, metrics);
        }
        count(frames, n, metrics);
    }
}

/// The frames' bytes past the first `sent` of them all, a buffer per frame.
fn unsent(frames: &[Arc<Frame>], mut sent: usize) -> impl Iterator<Item = Bytes> + '_ {
    frames.iter().filter_map(move |f| {
        let skip = sent.min(f.wire.len());
        sent -= skip;
        (skip < f.wire.len()).then(|| f.wire.slice(skip..))
    })
}

/// The frames' bytes, one after the other (one frame: its own bytes, no copy).
pub(crate) fn joined(frames: &[Arc<Frame>]) -> Bytes {
    match frames {
        [one] => one.wire.clone(),
        _ => {
            let mut all = Vec::with_capacity(frames.iter().map(|f| f.wire.len()).sum());
            for f in frames {
                all.extend_from_slice(&f.wire);
            }
            all.into()
        }
    }
}

/// Every session's sink, for the ticker (pings, token expiry) and the shutdown's close.
#[derive(Debug)]
pub(crate) struct Sessions {
    sinks: Mutex<HashMap<u64, Arc<Sink>>>,
    next: AtomicU64,
    /// Set when the server stops: every session, and any that registers after, closes so.
    closing: Mutex<Option<(u16, &'static str)>>,
    /// The ping interval in ms (0: no pings).
    every: u64,
    metrics: Arc<Metrics>,
    /// Sessions started or ended since the ticker last gave freed memory back ([`give_back`]).
    churn: AtomicUsize,
}

impl Sessions {
    pub(crate) fn new(limits: &Limits, metrics: &Arc<Metrics>) -> Arc<Sessions> {
        Arc::new(Sessions {
            sinks: Mutex::default(),
            next: AtomicU64::new(0),
            closing: Mutex::new(None),
            every: limits.ping_interval_ms,
            metrics: Arc::clone(metrics),
            churn: AtomicUsize::new(0),
        })
    }

    /// Registers a session's sink: its token runs out `ttl_secs` from now, its first ping is due
    /// one interval after it goes live. Returns the session's id (it names the session in its
    /// channel too); the session [`leave`](Self::leave)s with it when it ends.
    pub(crate) fn register(&self, sink: &Arc<Sink>, ttl_secs: u64) -> u64 {
        let now = mono_ms();
        {
            let mut out = sink.out.lock().expect("sink lock");
            out.expires = now.saturating_add(ttl_secs.saturating_mul(1000));
            out.ping_due = now.saturating_add(self.every);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.sinks.lock().expect("sessions lock").insert(id, Arc::clone(sink));
        self.churn.fetch_add(1, Ordering::Relaxed);
        if let Some((code, reason)) = *self.closing.lock().expect("sessions lock") {
            sink.end(code, reason);
        }
        id
    }

    /// Session `id` ended.
    pub(crate) fn leave(&self, id: u64) {
        self.sinks.lock().expect("sessions lock").remove(&id);
        self.churn.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes every session with `code` and `reason`, and any that registers from now on.
    pub(crate) fn close_all(&self, code: u16, reason: &'static str) {
        *self.closing.lock().expect("sessions lock") = Some((code, reason));
        for sink in self.all() {
            sink.end(code, reason);
        }
    }

    fn all(&self) -> Vec<Arc<Sink>> {
        self.sinks.lock().expect("sessions lock").values().cloned().collect()
    }

    /// Pings the live sessions as their pings fall due and ends those whose token expired or that
    /// did not answer; runs until aborted. It looks twice per ping interval (at most every second).
    /// After a wave of sessions started or ended, it gives the memory their handshakes and ends freed
    /// back to the system ([`give_back`]).
    pub(crate) async fn run(self: Arc<Self>) {
        let period = if self.every == 0 { 1000 } else { (self.every / 2).clamp(10, 1000) };
        let mut tick = tokio::time::interval(Duration::from_millis(period));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut churn = 0;
        loop {
            tick.tick().await;
            let now = mono_ms();
            for sink in self.all() {
                sink.tick(now, self.every, &self.metrics);
            }
            // Once the wave is over (a tick with none started or ended), so that a steady trickle of
            // sessions does not walk the heap every second.
            let new = self.churn.swap(0, Ordering::Relaxed);
            churn += new;
            if new == 0 && churn >= GIVE_BACK_AFTER {
                churn = 0;
                tokio::task::spawn_blocking(give_back);
            }
        }
    }
}

/// Sessions started or ended after which the ticker gives freed memory back.
const GIVE_BACK_AFTER: usize = 256;

/// Gives the pages malloc holds free back to the system. A wave of connections frees most of what
/// their handshakes took (hyper's buffers, the hello, the initial sync), but glibc returns only the
/// top of its heap by itself: the free pages between the sessions' long-lived allocations stay
/// resident (~0.3 KB per idle connection at 10,000). `malloc_trim` releases them (`MADV_DONTNEED`).
/// Elsewhere than glibc, nothing.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims malloc's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A TLS stream's reading and writing halves.
type Tls = (ReadHalf<TokioIo<Upgraded>>, WriteHalf<TokioIo<Upgraded>>);

/// A session's socket: the sink, and the reading side.
pub(crate) struct Socket {
    pub(crate) sink: Arc<Sink>,
    reader: Reader,
    /// A TLS socket's halves (the session reads and writes them itself).
    tls: Option<Box<Tls>>,
}

/// How a read ended the session.
#[derive(Debug)]
pub(crate) enum Recv {
    Gone,
    Bad(Bad),
}

/// Reads what a plain socket has into `reader` (a stack buffer, so an idle session holds none).
fn read_plain(tcp: &TcpStream, reader: &mut Reader) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = tcp.try_read(&mut chunk)?;
    reader.feed(&chunk[..n]);
    Ok(n)
}

impl Socket {
    /// The socket of an upgraded HTTP connection: a plain TCP stream when it is one (taken out of
    /// the HTTP stack, with any bytes it had read), else (TLS) the upgraded stream.
    pub(crate) fn new(upgraded: Upgraded) -> Socket {
        let mut reader = Reader::default();
        let (tcp, tls) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                reader.feed(&parts.read_buf);
                (Some(parts.io.into_inner()), None)
            }
            Err(upgraded) => (None, Some(Box::new(tokio::io::split(TokioIo::new(upgraded))))),
        };
        let sink = Arc::new(Sink { tcp, out: Mutex::new(Out::default()), waker: AtomicWaker::new() });
        Socket { sink, reader, tls }
    }

    /// A plain TCP socket whose handshake the server answered itself (no bytes read past it).
    pub(crate) fn plain(tcp: TcpStream) -> Socket {
        let sink =
            Arc::new(Sink { tcp: Some(tcp), out: Mutex::new(Out::default()), waker: AtomicWaker::new() });
        Socket { sink, reader: Reader::default(), tls: None }
    }

    /// The client's next message (a frame or message above `max` bytes is refused). Cancel-safe:
    /// what was read stays in the reader.
    pub(crate) async fn recv(&mut self, max: usize) -> Result<Incoming, Recv> {
        std::future::poll_fn(|cx| self.poll_recv(cx, max)).await
    }

    /// The client's next message, if the socket has it; else registers to be woken when it may.
    /// No future is kept between polls, so an idle session holds nothing for its reads.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Incoming, Recv>> {
        loop {
            if let Some(m) = self.reader.next(max).map_err(Recv::Bad)? {
                return Poll::Ready(Ok(m));
            }
            let read = match (&self.sink.tcp, &mut self.tls) {
                (Some(tcp), _) => {
                    if std::task::ready!(tcp.poll_read_ready(cx)).is_err() {
                        return Poll::Ready(Err(Recv::Gone));
                    }
                    match read_plain(tcp, &mut self.reader) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => r,
                    }
                }
                (None, Some(tls)) => {
                    let mut chunk = [0u8; 16 * 1024];
                    let mut buf = ReadBuf::new(&mut chunk);
                    std::task::ready!(Pin::new(&mut tls.0).poll_read(cx, &mut buf)).map(|()| {
                        self.reader.feed(buf.filled());
                        buf.filled().len()
                    })
                }
                (None, None) => unreachable!("a socket is plain or TLS"),
            };
            if matches!(read, Ok(0) | Err(_)) {
                return Poll::Ready(Err(Recv::Gone));
            }
        }
    }

    /// Queues a frame of the session's own (after any channel frame queued before it): its buffers
    /// together, so no channel frame comes between them.
    pub(crate) fn put(&self, frame: impl IntoIterator<Item = Bytes>) {
        let mut out = self.sink.out.lock().expect("sink lock");
        self.sink.put(&mut out, frame.into_iter());
    }

    /// Writes what is queued if the socket takes all of it now: `Some(Ok)` when it did, `Some(Err)`
    /// when the socket failed, `None` when the rest has to wait ([`flush`](Self::flush)).
    pub(crate) fn try_flush(&self) -> Option<Result<(), Failed>> {
        let tcp = self.sink.tcp.as_ref()?;
        let mut out = self.sink.out.lock().expect("sink lock");
        Sink::write_queue(tcp, &mut out);
        if out.broken { Some(Err(Failed::Gone)) } else { out.queue.is_empty().then_some(Ok(())) }
    }

    /// Writes everything queued, each wait for the socket bounded by `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) -> Result<(), Failed> {
        loop {
            match (&self.sink.tcp, &mut self.tls) {
                (Some(tcp), _) => {
                    {
                        let mut out = self.sink.out.lock().expect("sink lock");
                        Sink::write_queue(tcp, &mut out);
                        if out.broken {
                            return Err(Failed::Gone);
                        }
                        if out.queue.is_empty() {
                            return Ok(());
                        }
                    }
                    match timeout(limit, tcp.writable()).await {
                        Err(_) => return Err(Failed::Late),
                        Ok(Err(_)) => return Err(Failed::Gone),
                        Ok(Ok(())) => {}
                    }
                }
                (None, Some(tls)) => {
                    let queued = self.sink.out.lock().expect("sink lock").queue.take();
                    if queued.is_empty() {
                        return Ok(());
                    }
                    for b in queued {
                        match timeout(limit, tls.1.write_all(&b)).await {
                            Err(_) => return Err(Failed::Late),
                            Ok(Err(_)) => return Err(Failed::Gone),
                            Ok(Ok(())) => {}
                        }
                    }
                    match timeout(limit, tls.1.flush()).await {
                        Err(_) => return Err(Failed::Late),
                        Ok(Err(_)) => return Err(Failed::Gone),
                        Ok(Ok(())) => {}
                    }
                }
                (None, None) => unreachable!("a socket is plain or TLS"),
            }
        }
    }

    /// Ends the connection: the close frame (if the client may still read it), the end of the
    /// server's writing, then a short wait for the client's side to end, so that what the client
    /// had sent and the server did not read does not reset the connection before the close frame
    /// is read.
    pub(crate) async fn close(&mut self, frame: Option<Bytes>) {
        // No channel frame after the close frame.
        self.sink.out.lock().expect("sink lock").end_with(close::GOING_AWAY, "closing");
        if let Some(frame) = frame {
            self.put([frame]);
            // A client that does not read may never take the close frame: do not wait for it.
            if self.flush(Duration::from_secs(2)).await.is_err() {
                return;
            }
        }
        let linger = Duration::from_secs(1);
        match (&self.sink.tcp, &mut self.tls) {
            (Some(tcp), _) => {
                #[cfg(unix)]
                {
                    use std::os::fd::AsRawFd;
                    // SAFETY: shutting down the writing side of a socket this session owns.
                    unsafe { libc::shutdown(tcp.as_raw_fd(), libc::SHUT_WR) };
                }
                let _ = timeout(linger, async {
                    loop {
                        if tcp.readable().await.is_err() {
                            return;
                        }
                        let mut sink = Reader::default();
                        match read_plain(tcp, &mut sink) {
                            Ok(0) => return,
                            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
                            _ => {}
                        }
                    }
                })
                .await;
            }
            (None, Some(tls)) => {
                let _ = timeout(linger, async {
                    let _ = tls.1.shutdown().await;
                    let _ = tokio::io::copy(&mut tls.0, &mut tokio::io::sink()).await;
                })
                .await;
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink with no socket of its own (as a TLS session's): what the ticker writes stays queued.
    fn sink() -> Arc<Sink> {
        Arc::new(Sink { tcp: None, out: Mutex::new(Out::default()), waker: AtomicWaker::new() })
    }

    fn sessions(ping_ms: u64) -> Arc<Sessions> {
        let limits = Limits { ping_interval_ms: ping_ms, ..Limits::default() };
        Sessions::new(&limits, &Arc::new(Metrics::default()))
    }

    fn queued(sink: &Sink) -> Vec<Bytes> {
        sink.out.lock().unwrap().queue.take().into()
    }

    /// A sink is held by every connection: with the two counts of its `Arc` and malloc's word, at
    /// most 120 bytes is a 144-byte block (176 before its queue and close reason were boxed).
    #[test]
    fn a_sink_is_at_most_120_bytes() {
        assert!(std::mem::size_of::<Sink>() <= 120, "{} bytes", std::mem::size_of::<Sink>());
    }

    #[test]
    fn the_ticker_pings_when_due_and_ends_a_session_that_did_not_answer() {
        let sessions = sessions(1_000);
        let s = sink();
        sessions.register(&s, 3_600);
        let now = mono_ms();
        // In its initial sync a session is not pinged (it is not reading its socket).
        s.tick(now + 5_000, 1_000, &sessions.metrics);
        assert!(queued(&s).is_empty());
        s.go_live(0);
        s.tick(now + 500, 1_000, &sessions.metrics);
        assert!(queued(&s).is_empty(), "not due yet");
        s.tick(now + 1_000, 1_000, &sessions.metrics);
        assert_eq!(queued(&s), vec![Bytes::from_static(ws::EMPTY_PING)]);
        // Answered: the next one goes out an interval later.
        s.pong();
        s.tick(now + 1_500, 1_000, &sessions.metrics);
        assert!(queued(&s).is_empty());
        s.tick(now + 2_000, 1_000, &sessions.metrics);
        assert_eq!(queued(&s), vec![Bytes::from_static(ws::EMPTY_PING)]);
        // Not answered by the next one: the session ends, counted as a slow consumer.
        s.tick(now + 3_000, 1_000, &sessions.metrics);
        assert!(queued(&s).is_empty());
        assert_eq!(s.out.lock().unwrap().ended().map(|(code, _)| code), Some(close::SLOW_CONSUMER));
        assert_eq!(sessions.metrics.slow_consumers.get(), 1);
    }

    #[test]
    fn the_ticker_ends_a_session_whose_token_expired_and_the_shutdown_ends_all() {
        let sessions = sessions(0);
        let (a, b) = (sink(), sink());
        let ra = sessions.register(&a, 2);
        let rb = sessions.register(&b, 3_600);
        a.go_live(0);
        b.go_live(0);
        let now = mono_ms();
        a.tick(now + 1_000, 0, &sessions.metrics);
        assert_eq!(a.out.lock().unwrap().ended(), None, "no pings at interval 0, and not expired yet");
        a.tick(now + 2_000, 0, &sessions.metrics);
        assert_eq!(a.out.lock().unwrap().ended(), Some((close::UNAUTHORIZED, "token expired")));
        sessions.close_all(close::GOING_AWAY, "server shutting down");
        assert_eq!(b.out.lock().unwrap().ended().map(|(code, _)| code), Some(close::GOING_AWAY));
        // A session that registers after the shutdown began is ended at once.
        let late = sink();
        let rl = sessions.register(&late, 3_600);
        assert_eq!(late.out.lock().unwrap().ended().map(|(code, _)| code), Some(close::GOING_AWAY));
        for id in [ra, rb, rl] {
            sessions.leave(id);
        }
        assert!(sessions.all().is_empty(), "a session leaves the ticker when it ends");
    }
    /// `n` plain sockets on loopback: the server's sides as sinks, and the clients' sides.
    async fn plain(n: usize) -> (Vec<Arc<Sink>>, Vec<TcpStream>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut sinks, mut clients) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            sinks.push(Arc::new(Sink {
                tcp: Some(server),
                out: Mutex::default(),
                waker: AtomicWaker::new(),
            }));
            clients.push(client);
        }
        (sinks, clients)
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = vec![0; n];
        timeout(Duration::from_secs(10), client.read_exact(&mut got)).await.unwrap().unwrap();
        got
    }

    fn frames(versions: std::ops::Range<i64>, size: usize) -> Vec<Arc<Frame>> {
        versions.map(|v| Frame::new(v, format!("{v}:{}", "x".repeat(size)).as_bytes())).collect()
    }

    fn wire(frames: &[Arc<Frame>]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.wire.to_vec()).collect()
    }

    #[tokio::test]
    async fn fan_out_gives_every_subscriber_the_frames_it_lacks_in_order_through_the_ring_or_not() {
        for ring in [true, false] {
            // More subscribers than one io_uring submission takes.
            let (sinks, mut clients) = plain(uring::ENTRIES + 44).await;
            let metrics = Metrics::default();
            let ring = ring && uring::available();
            for s in &sinks {
                s.go_live(0);
            }
            // One has a frame already, one is in its initial sync, one has its own message waiting.
            sinks[1].out.lock().unwrap().sent = 1;
            sinks[2].out.lock().unwrap().live = false;
            sinks[3].out.lock().unwrap().queue.push_back(Bytes::from_static(b"mine"));
            let all = frames(1..4, 200);
            offer_all_via(ring, &sinks, &all, &joined(&all), -5, 64, &metrics);
            let fresh = wire(&all);
            for (i, client) in clients.iter_mut().enumerate() {
                match i {
                    1 => assert_eq!(
                        read_exactly(client, fresh.len() - all[0].wire.len()).await,
                        wire(&all[1..])
                    ),
                    2 => {}
                    3 => {
                        // The session writes its own queue (ahead of the frames) when woken.
                        {
                            let mut out = sinks[3].out.lock().unwrap();
                            Sink::write_queue(sinks[3].tcp.as_ref().unwrap(), &mut out);
                        }
                        assert_eq!(
                            read_exactly(client, 4 + fresh.len()).await,
                            [&b"mine"[..], &fresh].concat()
                        );
                    }
                    _ => assert_eq!(read_exactly(client, fresh.len()).await, fresh, "subscriber {i}"),
                }
            }
            let delivered = (3 * (sinks.len() - 2) + 2) as u64;
            assert_eq!(metrics.deliveries.get(), delivered, "ring {ring}");
            assert_eq!(sinks[2].out.lock().unwrap().sent, 0, "no frame in an initial sync");
            // Given again, nobody gets a frame twice.
            offer_all_via(ring, &sinks, &all, &joined(&all), -5, 64, &metrics);
            assert_eq!(metrics.deliveries.get(), delivered);
        }
    }

    #[tokio::test]
    async fn a_full_socket_keeps_the_rest_queued_in_order_and_one_too_far_behind_is_cut() {
        for ring in [true, false] {
            let ring = ring && uring::available();
            let (sinks, mut clients) = plain(2).await;
            let metrics = Metrics::default();
            for s in &sinks {
                s.go_live(0);
            }
            // The clients read nothing while 8 MB of frames go out: the sockets fill up.
            let all = frames(1..129, 64 * 1024);
            for chunk in all.chunks(8) {
                offer_all_via(ring, &sinks, chunk, &joined(chunk), 0, 1024, &metrics);
            }
            let queued = sinks[0].out.lock().unwrap().queue.len();
            assert!(queued > 0, "ring {ring}: the socket took it all");
            // What was queued goes out after what was sent, as the session flushes.
            let expected = wire(&all);
            let reader = async {
                let got = read_exactly(&mut clients[0], expected.len()).await;
                assert!(got == expected, "ring {ring}: the bytes came out of order");
            };
            let mut socket = Socket { sink: Arc::clone(&sinks[0]), reader: Reader::default(), tls: None };
            let flush = async { socket.flush(Duration::from_secs(10)).await.unwrap() };
            tokio::join!(reader, flush);
            // A subscriber with more frames waiting than the channel's buffer is cut off, if they
            // came in one go too.
            let (sinks, _clients) = plain(2).await;
            for s in &sinks {
                s.go_live(0);
            }
            let (few, many) = (frames(1..9, 64 * 1024), frames(1..129, 64 * 1024));
            offer_all_via(ring, &sinks[..1], &few, &joined(&few), 0, 1024, &metrics);
            offer_all_via(ring, &sinks[1..], &many, &joined(&many), 0, 4, &metrics);
            assert_eq!(sinks[0].out.lock().unwrap().ended(), None);
            let end = sinks[1].out.lock().unwrap().ended();
            assert_eq!(end.map(|(code, _)| code), Some(close::SLOW_CONSUMER), "ring {ring}");
            assert_eq!(metrics.slow_consumers.get(), 1);
        }
    }
}

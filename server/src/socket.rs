//! A session's socket after the WebSocket handshake, and the [`Sink`] its channel writes to.
//!
//! A plain TCP socket is shared: the session reads it, and whoever holds the sink's lock writes it:
//! the session (its own messages) or its channel's fan-out, which writes each frame's bytes (framed
//! once for every subscriber) with a non-blocking write straight from the fan-out task. No session
//! task wakes for a channel frame the socket takes at once; only what the socket cannot take yet is
//! queued, and the session is woken to write it when the socket has room, within the send timeout.
//! An idle connection holds no read or write buffer.
//!
//! A TLS socket (each connection encrypts its own bytes) is written by its session only: the fan-out
//! queues the frames and wakes it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::hub::Frame;
use crate::metrics::Metrics;
use crate::protocol::close;
use crate::ws::{Bad, Incoming, Reader};

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
    /// Bytes not yet written, in order (empty, and with no allocation, while the socket keeps up).
    queue: VecDeque<Bytes>,
    /// The last channel version written or queued.
    sent: i64,
    /// Takes channel frames (after its initial sync).
    live: bool,
    /// The session is to close with this code and reason (asked by the hub or the fan-out).
    end: Option<(u16, &'static str)>,
    /// A write failed: the session ends at its next look.
    broken: bool,
}

/// The writing side of a session's socket.
#[derive(Debug)]
pub(crate) struct Sink {
    /// The plain socket, written by whoever holds `out`; `None` for TLS (the session writes).
    tcp: Option<TcpStream>,
    out: Mutex<Out>,
    /// Wakes the session: something is queued, or it is to close.
    pub(crate) wake: Notify,
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
                for (slot, b) in io.iter_mut().zip(&out.queue) {
                    *slot = IoSlice::new(b);
                    n += 1;
                }
                tcp.try_write_vectored(&io[..n])
            };
            match written {
                Ok(0) => out.broken = true,
                Ok(mut n) => {
                    while n > 0 {
                        let front = out.queue.front_mut().expect("written bytes were queued");
                        if front.len() <= n {
                            n -= front.len();
                            out.queue.pop_front();
                        } else {
                            bytes::Buf::advance(front, n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => out.broken = true,
            }
        }
        if out.queue.is_empty() && out.queue.capacity() > 0 {
            out.queue = VecDeque::new();
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

    /// Gives a subscriber its channel's `frames` (in version order) that it does not have yet,
    /// unless it is still in its initial sync. A frame it needs that the channel no longer holds
    /// (newer than its last, at most `evicted`), or more than `capacity` frames waiting, cut it off.
    /// Returns how many frames it was given.
    pub(crate) fn offer(
        &self,
        frames: &[Arc<Frame>],
        evicted: i64,
        capacity: usize,
        metrics: &Metrics,
    ) -> usize {
        let mut out = self.out.lock().expect("sink lock");
        if !out.live || out.end.is_some() || out.broken {
            return 0;
        }
        let sent = out.sent;
        let new = frames.iter().position(|f| f.version > sent).map_or(&[][..], |i| &frames[i..]);
        if sent < evicted {
            Self::cut(&mut out, metrics);
            drop(out);
            self.wake.notify_one();
            return 0;
        }
        let Some(last) = new.last() else { return 0 };
        out.sent = last.version;
        let waiting = self.put(&mut out, new.iter().map(|f| f.wire.clone()));
        if out.queue.len() > capacity {
            Self::cut(&mut out, metrics);
        }
        drop(out);
        if waiting {
            self.wake.notify_one();
        }
        metrics.deliveries.add(new.len() as u64);
        for f in new {
            metrics.fanout_latency.observe(f.published.elapsed());
        }
        new.len()
    }

    /// Cuts off a subscriber too far behind (counted once, whoever finds it first).
    fn cut(out: &mut Out, metrics: &Metrics) {
        if out.end.is_none() {
            metrics.slow_consumers.inc();
            out.end = Some(SLOW);
        }
    }

    /// [`cut`](Self::cut), from the session: its socket did not take a write in time.
    pub(crate) fn cut_off(&self, metrics: &Metrics) -> (u16, &'static str) {
        let mut out = self.out.lock().expect("sink lock");
        Self::cut(&mut out, metrics);
        out.end.expect("just set")
    }

    /// Starts taking channel frames after version `sent` (the session's initial sync ended there).
    pub(crate) fn go_live(&self, sent: i64) {
        let mut out = self.out.lock().expect("sink lock");
        out.sent = out.sent.max(sent);
        out.live = true;
    }

    /// Closes the session with `code` and `reason` (at its next look).
    pub(crate) fn end(&self, code: u16, reason: &'static str) {
        self.out.lock().expect("sink lock").end.get_or_insert((code, reason));
        self.wake.notify_one();
    }

    /// Why the session is to close, if it is.
    pub(crate) fn ended(&self) -> Option<(u16, &'static str)> {
        self.out.lock().expect("sink lock").end
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
    /// The largest frame or message a client may send.
    max: usize,
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
    pub(crate) fn new(upgraded: Upgraded, max: usize) -> Socket {
        let mut reader = Reader::default();
        let (tcp, tls) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                reader.feed(&parts.read_buf);
                (Some(parts.io.into_inner()), None)
            }
            Err(upgraded) => (None, Some(Box::new(tokio::io::split(TokioIo::new(upgraded))))),
        };
        let sink = Arc::new(Sink { tcp, out: Mutex::new(Out::default()), wake: Notify::new() });
        Socket { sink, reader, tls, max }
    }

    /// The client's next message. Cancel-safe: what was read stays in the reader.
    pub(crate) async fn recv(&mut self) -> Result<Incoming, Recv> {
        loop {
            if let Some(m) = self.reader.next(self.max).map_err(Recv::Bad)? {
                return Ok(m);
            }
            match (&self.sink.tcp, &mut self.tls) {
                (Some(tcp), _) => {
                    tcp.readable().await.map_err(|_| Recv::Gone)?;
                    match read_plain(tcp, &mut self.reader) {
                        Ok(0) => return Err(Recv::Gone),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Recv::Gone),
                    }
                }
                (None, Some(tls)) => {
                    let buf = self.reader.buffer();
                    buf.reserve(16 * 1024);
                    match tls.0.read_buf(buf).await {
                        Ok(0) | Err(_) => return Err(Recv::Gone),
                        Ok(_) => {}
                    }
                }
                (None, None) => unreachable!("a socket is plain or TLS"),
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
                    let queued = std::mem::take(&mut self.sink.out.lock().expect("sink lock").queue);
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
    pub(crate) async fn close(mut self, frame: Option<Bytes>) {
        // No channel frame after the close frame.
        self.sink.out.lock().expect("sink lock").end.get_or_insert((close::GOING_AWAY, "closing"));
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

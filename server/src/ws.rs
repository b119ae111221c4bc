//! The WebSocket protocol (RFC 6455) on the server's side: the handshake's answer, server frames and
//! a reader of client frames.
//!
//! Server frames are not masked, so one encoded frame is the same bytes for every subscriber of a
//! channel: [`Frame`](crate::hub::Frame)s are framed once, when published, and written as they are.
//! The reader keeps no buffer while a connection is idle: bytes are only held while a frame is
//! incomplete. No extension is negotiated (no compression), so a frame with a reserved bit set is
//! refused.

use base64::Engine;
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// What the first bytes of a plain connection hold, as far as the server's own handshake goes.
#[derive(Debug, PartialEq)]
pub(crate) enum Opening {
    /// A well-formed WebSocket handshake for `/sync`, `len` bytes long: the answer to write.
    Sync { len: usize, answer: String },
    /// Not all of the request's head yet.
    Partial,
    /// Anything else (another path, a refusal to explain, a head above the buffer): for the HTTP
    /// server, which answers it as it always did.
    Http,
}

/// Reads the head of a plain connection's first request: a `GET /sync` asking to upgrade to
/// WebSocket version 13 with a key is answered by the server itself ([`Opening::Sync`]), with no
/// HTTP stack and none of its buffers, so a wave of reconnecting clients leaves little behind.
/// Whatever the `/sync` route would refuse, or cannot be told from `head` (`full`: the buffer it was
/// read into is full), goes to the HTTP server.
pub(crate) fn opening(head: &[u8], full: bool) -> Opening {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if !full => return Opening::Partial,
        _ => return Opening::Http,
    };
    let path = request.path.unwrap_or_default();
    if request.method != Some("GET") || request.version != Some(1) || path.split('?').next() != Some("/sync")
    {
        return Opening::Http;
    }
    let headers = &*request.headers;
    let values = |name: &str| {
        headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect::<Vec<_>>()
    };
    match handshake(true, values) {
        Ok(accept) => {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-accept: {accept}\r\n\r\n"
            );
            Opening::Sync { len, answer }
        }
        Err(_) => Opening::Http,
    }
}

/// Why a request is not a WebSocket opening handshake the server takes.
#[derive(Debug, PartialEq)]
pub(crate) enum Refused {
    /// Not a GET (400).
    NotGet,
    /// No `Connection: upgrade` and `Upgrade: websocket` (400).
    NoUpgrade,
    /// Not version 13 (426, saying 13).
    Version,
    /// No `Sec-WebSocket-Key` (400).
    NoKey,
}

impl Refused {
    /// What the HTTP answer says.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refused::NotGet => "a WebSocket handshake is a GET",
            Refused::NoUpgrade => "this is Moat's WebSocket endpoint: ask to upgrade to websocket",
            Refused::Version => "WebSocket version 13 only",
            Refused::NoKey => "a WebSocket handshake needs a Sec-WebSocket-Key",
        }
    }
}

/// The rules of an opening handshake (RFC 6455, version 13), for the server's own answer
/// ([`opening`]) and the HTTP route's alike: a GET, asking to upgrade to websocket, version 13, with
/// a key. `values(name)`: the request's values of header `name` (any case). Returns the
/// `Sec-WebSocket-Accept` answer.
pub(crate) fn handshake<'v>(get: bool, values: impl Fn(&str) -> Vec<&'v [u8]>) -> Result<String, Refused> {
    let has = |name: &str, token: &str| {
        values(name).iter().any(|v| {
            std::str::from_utf8(v).is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !get {
        return Err(Refused::NotGet);
    }
    if !has("connection", "upgrade") || !has("upgrade", "websocket") {
        return Err(Refused::NoUpgrade);
    }
    if values("sec-websocket-version").first().is_none_or(|v| *v != b"13") {
        return Err(Refused::Version);
    }
    let key = values("sec-websocket-key").first().copied().ok_or(Refused::NoKey)?;
    Ok(accept_key(key))
}

pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;
const CONTINUATION: u8 = 0x0;

/// The header of a final, unmasked server frame of `opcode` carrying `len` bytes; returns its length.
fn header(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A whole server frame: header and payload in one buffer (written with one call).
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut head = [0; 10];
    let n = header(opcode, payload.len(), &mut head);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
    out.into()
}

/// The server's ping: an empty ping frame, the same two bytes for every socket ([`frame`]`(PING, b"")`).
pub(crate) const EMPTY_PING: &[u8] = &[0x80 | PING, 0];

/// A text frame as two buffers, its header and `text` (not copied).
pub(crate) fn text(text: String) -> [Bytes; 2] {
    let mut head = [0; 10];
    let n = header(TEXT, text.len(), &mut head);
    [Bytes::copy_from_slice(&head[..n]), Bytes::from(text)]
}

/// Where the payload of a server frame made by [`frame`] starts.
pub(crate) fn payload_at(frame: &[u8]) -> usize {
    match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

/// A close frame with `code` and `reason` (cut to the 123 bytes a close frame has room for, at a
/// character boundary).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

/// A client's message.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client closes (its code, if it gave one).
    Close(Option<u16>),
}

/// Why the reader stopped: the close code the server answers with.
#[derive(Debug, PartialEq)]
pub(crate) enum Bad {
    /// A frame or message above the limit (1009).
    TooBig,
    /// Not WebSocket as RFC 6455 has it (1002).
    Protocol(&'static str),
    /// A text message that is not UTF-8 (1007).
    NotUtf8,
}

/// Reads client frames from the bytes given to it, joining fragmented messages. Between messages
/// it holds one empty word: what waits (the bytes of a frame not whole yet, the fragments of a
/// message) lives in a box made when bytes come and dropped when they are taken.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    pending: Option<Box<Pending>>,
}

/// What a [`Reader`] holds between reads.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes received and not yet taken as a frame.
    buf: Vec<u8>,
    /// The fragments of a message whose last frame has not come yet, and its opcode.
    partial: Option<(u8, Vec<u8>)>,
}

impl Reader {
    /// Takes bytes the client sent.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.pending.get_or_insert_default().buf.extend_from_slice(data);
        }
    }

    /// The next whole message, if the bytes so far hold one. `max` bounds a frame's payload and a
    /// message's; the header is enough to refuse one above it.
    pub(crate) fn next(&mut self, max: usize) -> Result<Option<Incoming>, Bad> {
        let Some(pending) = self.pending.as_mut() else { return Ok(None) };
        let next = pending.next(max);
        if pending.buf.is_empty() && pending.partial.is_none() {
            self.pending = None;
        }
        next
    }
}

impl Pending {
    fn next(&mut self, max: usize) -> Result<Option<Incoming>, Bad> {
        loop {
            let Some((fin, opcode, payload)) = self.frame(max)? else { return Ok(None) };
            let control = opcode & 0x8 != 0;
            if control {
                let message = match opcode {
                    CLOSE => Incoming::Close(
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                    ),
                    PING => Incoming::Ping(payload),
                    PONG => Incoming::Pong,
                    _ => return Err(Bad::Protocol("an unknown control opcode")),
                };
                return Ok(Some(message));
            }
            let (opcode, data) = match (opcode, self.partial.take()) {
                (CONTINUATION, None) => return Err(Bad::Protocol("a continuation frame with no message")),
                (CONTINUATION, Some((op, mut data))) => {
                    if data.len() + payload.len() > max {
                        return Err(Bad::TooBig);
                    }
                    data.extend_from_slice(&payload);
                    (op, data)
                }
                (TEXT | BINARY, None) => (opcode, payload),
                (TEXT | BINARY, Some(_)) => {
                    return Err(Bad::Protocol("a new message inside a fragmented one"));
                }
                _ => return Err(Bad::Protocol("an unknown data opcode")),
            };
            if !fin {
                self.partial = Some((opcode, data));
                continue;
            }
            return match opcode {
                TEXT => String::from_utf8(data).map(|t| Some(Incoming::Text(t))).map_err(|_| Bad::NotUtf8),
                _ => Ok(Some(Incoming::Binary)),
            };
        }
    }

    /// The next whole frame: its FIN bit, opcode and unmasked payload.
    fn frame(&mut self, max: usize) -> Result<Option<(bool, u8, Vec<u8>)>, Bad> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0F);
        if b[0] & 0x70 != 0 {
            return Err(Bad::Protocol("a reserved bit is set (no extension was agreed)"));
        }
        if b[1] & 0x80 == 0 {
            return Err(Bad::Protocol("a client frame must be masked"));
        }
        let (len, at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")), 10),
            126 | 127 => return Ok(None),
            n => (n as u64, 2),
        };
        if opcode & 0x8 != 0 && (len > 125 || !fin) {
            return Err(Bad::Protocol("a control frame must be whole and at most 125 bytes"));
        }
        if len > max as u64 {
            return Err(Bad::TooBig);
        }
        let (len, start) = (len as usize, at + 4);
        if b.len() < start + len {
            return Ok(None);
        }
        let mask: [u8; 4] = b[at..start].try_into().expect("4 bytes");
        let mut payload = b[start..start + len].to_vec();
        unmask(&mut payload, mask);
        if self.buf.len() == start + len {
            self.buf.clear();
        } else {
            self.buf.drain(..start + len);
        }
        Ok(Some((fin, opcode, payload)))
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_answers_a_sync_handshake_itself_and_leaves_the_rest_to_http() {
        let sync = "GET /sync HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        match opening(sync.as_bytes(), false) {
            Opening::Sync { len, answer } => {
                assert_eq!(len, sync.len());
                // RFC 6455's own example key and answer.
                assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{answer}");
                assert!(
                    answer.contains("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
                    "{answer}"
                );
                assert!(answer.ends_with("\r\n\r\n"));
            }
            other => panic!("{other:?}"),
        }
        // The head so far: wait for the rest (unless the buffer is full: then HTTP's).
        assert_eq!(opening(&sync.as_bytes()[..40], false), Opening::Partial);
        assert_eq!(opening(&sync.as_bytes()[..40], true), Opening::Http);
        // What the route refuses, or is not the route's, is HTTP's to answer.
        for other in [
            sync.replace("GET /sync", "GET /index.html"),
            sync.replace("GET /sync", "POST /sync"),
            sync.replace("GET /sync", "GET /synced"),
            sync.replace("Version: 13", "Version: 8"),
            sync.replace("Upgrade: websocket", "Upgrade: h2c"),
            sync.replace("keep-alive, Upgrade", "keep-alive"),
            sync.replace("Sec-WebSocket-Key", "Sec-WebSocket-Nonce"),
            sync.replace("HTTP/1.1", "HTTP/1.0"),
            "not HTTP at all\r\n\r\n".to_owned(),
        ] {
            assert_eq!(opening(other.as_bytes(), false), Opening::Http, "{other}");
        }
        assert!(matches!(
            opening(sync.replace("/sync", "/sync?v=1").as_bytes(), false),
            Opening::Sync { .. }
        ));
        // The route's refusals, each with its reason (the HTTP server's 400 and 426).
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
                    .collect()
            }
        };
        const GOOD: &[(&str, &str)] = &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        const NO_VERSION: &[(&str, &str)] = &[GOOD[0], GOOD[1], GOOD[3]];
        assert_eq!(handshake(true, headers(GOOD)).as_deref(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(handshake(false, headers(GOOD)), Err(Refused::NotGet));
        assert_eq!(handshake(true, headers(&GOOD[1..])), Err(Refused::NoUpgrade));
        assert_eq!(handshake(true, headers(NO_VERSION)), Err(Refused::Version));
        assert_eq!(handshake(true, headers(&GOOD[..3])), Err(Refused::NoKey));
    }

    #[test]
    fn the_empty_ping_is_the_framed_empty_ping() {
        assert_eq!(EMPTY_PING, &frame(PING, b"")[..]);
    }

    /// A client frame (masked), as a browser sends it: the server's header with FIN as given and
    /// the mask bit set, then the key and the masked payload.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut head = [0; 10];
        let n = header(opcode, payload.len(), &mut head);
        if !fin {
            head[0] &= 0x7F;
        }
        head[1] |= 0x80;
        let mut out = head[..n].to_vec();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        assert_eq!(&frame(TEXT, b"hi")[..], b"\x81\x02hi");
        let f = frame(TEXT, &[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = frame(BINARY, &vec![0; 70_000]);
        assert_eq!(&f[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        for n in [0, 125, 126, 65_535, 65_536] {
            let f = frame(TEXT, &vec![b'x'; n]);
            assert_eq!(f.len() - payload_at(&f), n);
        }
        let c = close_frame(1009, &"é".repeat(100));
        assert_eq!(&c[..4], &[0x88, 124, 0x03, 0xF1]);
        assert!(std::str::from_utf8(&c[4..]).is_ok(), "cut at a character boundary");
    }

    #[test]
    fn frames_come_whole_whatever_the_reads() {
        let mut bytes = client(true, TEXT, "héllo".as_bytes());
        bytes.extend(client(true, PING, b"p"));
        bytes.extend(client(false, TEXT, b"ab"));
        bytes.extend(client(true, PONG, b""));
        bytes.extend(client(false, CONTINUATION, b"cd"));
        bytes.extend(client(true, CONTINUATION, &[b'e'; 200]));
        bytes.extend(client(true, CLOSE, &1000u16.to_be_bytes()));
        // One byte at a time: nothing is taken before it is whole.
        let mut r = Reader::default();
        let mut got = Vec::new();
        for b in &bytes {
            r.feed(std::slice::from_ref(b));
            while let Some(m) = r.next(1024).unwrap() {
                got.push(m);
            }
        }
        let long = format!("abcd{}", "e".repeat(200));
        assert_eq!(
            got,
            vec![
                Incoming::Text("héllo".into()),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Pong,
                Incoming::Text(long),
                Incoming::Close(Some(1000)),
            ]
        );
        assert!(r.pending.is_none(), "nothing is held between messages");
        assert_eq!(std::mem::size_of::<Reader>(), 8, "an idle reader is one word");
    }

    #[test]
    fn bad_frames_are_refused_with_their_reason() {
        let refuse = |bytes: Vec<u8>, max: usize| {
            let mut r = Reader::default();
            r.feed(&bytes);
            r.next(max).unwrap_err()
        };
        // Refused from the header alone, before the payload arrives.
        let mut big = client(true, TEXT, &[b'x'; 2000]);
        big.truncate(8);
        assert_eq!(refuse(big, 1000), Bad::TooBig);
        let mut fragments = client(false, TEXT, &[b'x'; 600]);
        fragments.extend(client(true, CONTINUATION, &[b'x'; 600]));
        assert_eq!(refuse(fragments, 1000), Bad::TooBig);
        let mut unmasked = client(true, TEXT, b"x");
        unmasked[1] &= 0x7F;
        assert!(matches!(refuse(unmasked, 1000), Bad::Protocol(_)));
        let mut reserved = client(true, TEXT, b"x");
        reserved[0] |= 0x40;
        assert!(matches!(refuse(reserved, 1000), Bad::Protocol(_)));
        assert!(matches!(refuse(client(false, PING, b""), 1000), Bad::Protocol(_)));
        assert!(matches!(refuse(client(true, PING, &[0; 126]), 1000), Bad::Protocol(_)));
        assert!(matches!(refuse(client(true, CONTINUATION, b"x"), 1000), Bad::Protocol(_)));
        assert!(matches!(refuse(client(true, 0x3, b"x"), 1000), Bad::Protocol(_)));
        assert_eq!(refuse(client(true, TEXT, &[0xff, 0xfe]), 1000), Bad::NotUtf8);
        let mut twice = client(false, TEXT, b"a");
        twice.extend(client(true, TEXT, b"b"));
        assert!(matches!(refuse(twice, 1000), Bad::Protocol(_)));
    }
}

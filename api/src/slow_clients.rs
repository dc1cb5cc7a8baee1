//! Deadlines and a cap on connections, against slow, idle and too many clients. A client that
//! trickles its request headers (slowloris), stalls mid-body, or opens connections and leaves
//! them idle would otherwise hold a connection and a task for as long as it likes.
//!
//! [`GuardedAcceptor`] wraps each accepted connection (and closes those beyond
//! `MCP_MAX_CONNECTIONS` at once). The wrapper follows the protocol just enough to know when a
//! request is being received, being answered, or when nothing is going on:
//!
//! - HTTP/1: a request head must arrive in full within the read timeout of its first byte (of the
//!   accept, for the first request). Once an answer has started, the connection may go the idle
//!   timeout without any byte either way; the clock restarts with every byte written (an event
//!   stream's keep-alives) and stops while a head is being received or a handler runs (a long
//!   poll). Upgraded WebSockets have their own pings and no clock here.
//! - HTTP/2 (prior knowledge, `h2c`): the same read timeout bounds every frame other than DATA
//!   and every header block (HEADERS up to its last CONTINUATION); the idle timeout runs while no
//!   stream is open, whatever control frames (PING, SETTINGS) the client sends meanwhile.
//! - Bodies: [`with_body_timeout`] fails a body read when no data arrives for the read timeout.

use std::{
    collections::HashSet,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use poem::listener::Acceptor;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::connections::{ConnectionSlot, Connections};

const HEAD_END: &[u8; 4] = b"\r\n\r\n";
/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// More open streams than hyper ever allows on one connection: a client claiming more is
/// misbehaving.
const MAX_TRACKED_STREAMS: usize = 4096;

/// What the first write of an answer means for the connection: an interim `1xx` (such as
/// `100 Continue`) leaves the request in progress; `101` switches protocols.
fn after_write(phase: Phase, first: Option<&[u8]>) -> Phase {
    match (phase, first) {
        (Phase::Request, Some(b)) if b.starts_with(b"HTTP/1.1 101") => Phase::Upgraded,
        (Phase::Request, Some(b)) if b.starts_with(b"HTTP/1.1 1") => Phase::Request,
        (Phase::Request, _) => Phase::Idle,
        (other, _) => other,
    }
}

/// The deadlines every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a request head (HTTP/1) or a frame and header block (HTTP/2) to arrive in full.
    pub read_timeout: Duration,
    /// For a connection with no request in progress.
    pub idle_timeout: Duration,
    /// Open connections on this replica; 0: no limit.
    pub max_connections: usize,
}

pub struct GuardedAcceptor<A> {
    inner: A,
    limits: Limits,
    open: Arc<Connections>,
    /// Whether the last connection was refused (so a flood logs once, not per connection).
    refusing: bool,
}

impl<A> GuardedAcceptor<A> {
    pub fn new(inner: A, limits: Limits) -> Self {
        Self {
            inner,
            limits,
            open: Arc::default(),
            refusing: false,
        }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(
        Self::Io,
        poem::web::LocalAddr,
        poem::web::RemoteAddr,
        poem::http::uri::Scheme,
    )> {
        loop {
            let (io, local, remote, scheme) = self.inner.accept().await?;
            let limit = match self.limits.max_connections {
                0 => usize::MAX,
                n => n,
            };
            let Some(slot) = self.open.open(limit) else {
                if !self.refusing {
                    tracing::warn!(
                        limit,
                        "connection limit reached: closing new connections until some end"
                    );
                    self.refusing = true;
                }
                // Closed at once: accepting it is what drains the kernel's queue.
                drop(io);
                continue;
            };
            self.refusing = false;
            return Ok((Guarded::new(io, self.limits, slot), local, remote, scheme));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// HTTP/1 between requests, or answering one: the idle clock runs.
    Idle,
    /// Receiving an HTTP/1 head; `matched` bytes of `\r\n\r\n` seen so far.
    Head { matched: usize },
    /// The head is in; the body and the handler run without a clock here.
    Request,
    /// Switched protocols (WebSocket): no more HTTP heads on this connection.
    Upgraded,
    /// HTTP/2, followed frame by frame in [`H2`].
    H2,
}

/// Follows one direction of an HTTP/2 connection frame by frame, reading only the 9-byte frame
/// headers (lengths, types, flags, stream ids), never the payloads.
#[derive(Debug, Default)]
struct Frames {
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The type of the frame being received, once its header is in.
    current: Option<u8>,
}

/// A frame header: type, flags, stream id.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

impl Frames {
    fn feed(&mut self, mut bytes: &[u8], mut on_head: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.current = None;
                }
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = &self.head;
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                let head = FrameHead {
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                };
                self.payload_left = len;
                self.current = (len > 0).then_some(head.kind);
                on_head(head);
            }
        }
    }

    /// Inside a frame other than DATA (a slow DATA frame is the body timeout's business).
    fn mid_control_frame(&self) -> bool {
        self.have > 0 || self.current.is_some_and(|k| k != DATA)
    }
}

/// An HTTP/2 connection as far as the deadlines care.
#[derive(Debug, Default)]
struct H2 {
    inbound: Frames,
    outbound: Frames,
    /// A HEADERS frame came without END_HEADERS: CONTINUATION frames must finish it.
    in_header_block: bool,
    /// Streams the client opened that the server has not finished answering.
    open: HashSet<u32>,
}

pub struct Guarded<Io> {
    inner: Io,
    limits: Limits,
    phase: Phase,
    /// Bytes of the HTTP/2 preface matched at the start of the connection, until it is known
    /// which protocol the client speaks.
    sniffed: Option<usize>,
    h2: Option<Box<H2>>,
    /// When the head (HTTP/1) or the frame or header block (HTTP/2) being received must be in.
    head_deadline: Option<Instant>,
    /// When the connection last had something going on, while it has nothing now.
    idle_since: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    /// What `sleep` is set for. It may be earlier than the deadline (the idle clock restarted
    /// since): it then fires, and is set again.
    armed: Option<Instant>,
    _slot: ConnectionSlot,
}

impl<Io> Guarded<Io> {
    fn new(inner: Io, limits: Limits, slot: ConnectionSlot) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limits,
            // A connection that sends nothing at all is also a slow client.
            phase: Phase::Head { matched: 0 },
            sniffed: Some(0),
            h2: None,
            head_deadline: Some(now + limits.read_timeout),
            idle_since: None,
            sleep: Box::pin(tokio::time::sleep_until(now + limits.read_timeout)),
            armed: Some(now + limits.read_timeout),
            _slot: slot,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let idle = self.idle_since.map(|t| t + self.limits.idle_timeout);
        match (self.head_deadline, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An error once a deadline passed; otherwise arms the timer so the task wakes for it.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        loop {
            let at = self.deadline()?;
            if Instant::now() >= at {
                let what = if self.head_deadline.is_some_and(|h| h <= at) {
                    "request headers not received in time"
                } else {
                    "connection idle for too long"
                };
                return Some(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            if self
                .armed
                .is_none_or(|armed| armed > at || armed <= Instant::now())
            {
                self.sleep.as_mut().reset(at);
                self.armed = Some(at);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }

    /// Bytes the client sent.
    fn received(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(matched) = self.sniffed {
            let n = (H2_PREFACE.len() - matched).min(bytes.len());
            if bytes[..n] == H2_PREFACE[matched..matched + n] {
                if matched + n < H2_PREFACE.len() {
                    self.sniffed = Some(matched + n);
                    return Ok(());
                }
                self.sniffed = None;
                self.phase = Phase::H2;
                self.h2 = Some(Box::default());
                self.head_deadline = None;
                self.idle_since = Some(Instant::now());
                return self.h2_received(&bytes[n..]);
            }
            // Not HTTP/2: what looked like its preface was the start of an HTTP/1 head.
            self.sniffed = None;
            self.scan(&H2_PREFACE[..matched]);
        }
        match self.phase {
            Phase::H2 => self.h2_received(bytes),
            _ => {
                self.scan(bytes);
                Ok(())
            }
        }
    }

    /// Follows the bytes of an HTTP/1 head; returns once its blank line is seen.
    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let matched = match self.phase {
                Phase::Idle => {
                    self.idle_since = None;
                    self.head_deadline = Some(Instant::now() + self.limits.read_timeout);
                    0
                }
                Phase::Head { matched } => matched,
                Phase::Request | Phase::Upgraded | Phase::H2 => return,
            };
            let matched = if b == HEAD_END[matched] {
                matched + 1
            } else if b == HEAD_END[0] {
                1
            } else {
                0
            };
            if matched == HEAD_END.len() {
                self.phase = Phase::Request;
                self.head_deadline = None;
                return;
            }
            self.phase = Phase::Head { matched };
        }
    }

    fn h2_received(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(h2) = self.h2.as_deref_mut() else {
            return Ok(());
        };
        let H2 {
            inbound,
            in_header_block,
            open,
            ..
        } = h2;
        inbound.feed(bytes, |f| match f.kind {
            HEADERS => {
                if f.stream != 0 {
                    open.insert(f.stream);
                }
                *in_header_block = f.flags & END_HEADERS == 0;
            }
            CONTINUATION if f.flags & END_HEADERS != 0 => *in_header_block = false,
            RST_STREAM => {
                open.remove(&f.stream);
            }
            _ => {}
        });
        if open.len() > MAX_TRACKED_STREAMS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many open HTTP/2 streams",
            ));
        }
        let receiving = inbound.mid_control_frame() || *in_header_block;
        let busy = !open.is_empty();
        self.h2_deadlines(receiving, busy);
        Ok(())
    }

    /// Bytes the server sent.
    fn sent(&mut self, bytes: &[u8]) {
        match self.phase {
            Phase::H2 => {
                let Some(h2) = self.h2.as_deref_mut() else {
                    return;
                };
                let H2 {
                    outbound,
                    inbound,
                    in_header_block,
                    open,
                } = h2;
                outbound.feed(bytes, |f| {
                    let ends = matches!(f.kind, DATA | HEADERS) && f.flags & END_STREAM != 0;
                    if ends || f.kind == RST_STREAM {
                        open.remove(&f.stream);
                    }
                });
                let receiving = inbound.mid_control_frame() || *in_header_block;
                let busy = !open.is_empty();
                self.h2_deadlines(receiving, busy);
            }
            Phase::Idle => self.idle_since = Some(Instant::now()),
            _ => {}
        }
    }

    fn h2_deadlines(&mut self, receiving: bool, busy: bool) {
        match (receiving, self.head_deadline) {
            (true, None) => self.head_deadline = Some(Instant::now() + self.limits.read_timeout),
            (false, Some(_)) => self.head_deadline = None,
            _ => {}
        }
        match (busy, self.idle_since) {
            (false, None) => self.idle_since = Some(Instant::now()),
            (true, Some(_)) => self.idle_since = None,
            _ => {}
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.received(&buf.filled()[before..])?;
            // The deadlines may have moved: arm the timer for the new one.
            if let Some(e) = this.check(cx) {
                return Poll::Ready(Err(e));
            }
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> Guarded<Io> {
    fn written(&mut self, cx: &mut Context<'_>, first: Option<&[u8]>, n: usize, all: &[&[u8]]) {
        if self.phase != Phase::H2 {
            self.phase = after_write(self.phase, first);
            if self.phase == Phase::Idle {
                self.idle_since = Some(Instant::now());
            }
            return;
        }
        let mut left = n;
        for part in all {
            let take = left.min(part.len());
            self.sent(&part[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        let _ = self.check(cx);
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written(cx, Some(buf), n, &[buf]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            let parts: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            let first = parts.iter().find(|b| !b.is_empty()).copied();
            this.written(cx, first, n, &parts);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body whose reads fail when the client sends nothing for `timeout`.
pub fn with_body_timeout(body: poem::Body, timeout: Duration) -> poem::Body {
    let stream = body.into_bytes_stream();
    poem::Body::from_bytes_stream(TimedStream {
        inner: Box::pin(stream),
        timeout,
        sleep: Box::pin(tokio::time::sleep(timeout)),
    })
}

struct TimedStream<S> {
    inner: Pin<Box<S>>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<S, E> Stream for TimedStream<S>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
    E: Into<io::Error>,
{
    type Item = io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                let deadline = Instant::now() + self.timeout;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(item.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped sending the request body",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded() -> Guarded<tokio::io::Empty> {
        let limits = Limits {
            read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            max_connections: 0,
        };
        let slot = Arc::new(Connections::default()).open(1).unwrap();
        Guarded::new(tokio::io::empty(), limits, slot)
    }

    #[tokio::test]
    async fn a_head_is_followed_across_reads() {
        let mut d = guarded();
        d.received(b"GET / HTTP/1.1\r\nHost: x\r").unwrap();
        assert!(matches!(d.phase, Phase::Head { .. }));
        d.received(b"\n\r\nbody").unwrap();
        assert_eq!(d.phase, Phase::Request);
        assert!(d.deadline().is_none());
    }

    #[tokio::test]
    async fn a_request_that_starts_like_the_http2_preface_is_still_http1() {
        let mut d = guarded();
        d.received(b"PRI * HTTP/2.0\r\n\r\nXX").unwrap();
        assert_eq!(d.phase, Phase::Request);
    }

    #[tokio::test]
    async fn http2_header_blocks_and_streams_are_followed() {
        let mut d = guarded();
        d.received(&H2_PREFACE[..10]).unwrap();
        assert!(d.h2.is_none() && d.head_deadline.is_some());
        d.received(&H2_PREFACE[10..]).unwrap();
        assert_eq!(d.phase, Phase::H2);
        assert!(d.head_deadline.is_none() && d.idle_since.is_some());
        // HEADERS on stream 1 without END_HEADERS, 4 bytes of payload, sent in two pieces.
        d.received(&[0, 0, 4, HEADERS, 0, 0, 0, 0, 1, 0xaa])
            .unwrap();
        assert!(
            d.head_deadline.is_some(),
            "a header block is being received"
        );
        assert!(d.idle_since.is_none(), "a stream is open");
        d.received(&[0xbb, 0xcc, 0xdd]).unwrap();
        assert!(d.head_deadline.is_some(), "CONTINUATION still owed");
        d.received(&[0, 0, 0, CONTINUATION, END_HEADERS, 0, 0, 0, 1])
            .unwrap();
        assert!(d.head_deadline.is_none());
        // The answer ends the stream: the connection is idle again.
        d.sent(&[0, 0, 0, HEADERS, END_STREAM | END_HEADERS, 0, 0, 0, 1]);
        assert!(d.idle_since.is_some());
    }

    #[test]
    fn interim_answers_keep_the_request_going() {
        let r = Phase::Request;
        assert_eq!(
            after_write(r, Some(b"HTTP/1.1 100 Continue\r\n\r\n")),
            Phase::Request
        );
        assert_eq!(
            after_write(r, Some(b"HTTP/1.1 101 Switching")),
            Phase::Upgraded
        );
        assert_eq!(after_write(r, Some(b"HTTP/1.1 200 OK")), Phase::Idle);
        assert_eq!(after_write(Phase::Idle, Some(b"body")), Phase::Idle);
    }
}

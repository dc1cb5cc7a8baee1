//! Read timeouts against slow clients. A client that trickles its request headers (slowloris)
//! or stalls mid-body would otherwise hold a connection and a task for as long as it likes.
//!
//! - Headers: [`HeaderDeadlineAcceptor`] wraps each accepted connection so that a request head
//!   must arrive in full within the read timeout of its first byte (of the accept, for the
//!   first request). Idle keep-alive connections, upgraded WebSockets and long polls are not
//!   affected: the clock only runs while a head is being received.
//! - Bodies: [`with_body_timeout`] fails a body read when no data arrives for the read timeout.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use poem::listener::Acceptor;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

const HEAD_END: &[u8; 4] = b"\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

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

pub struct HeaderDeadlineAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeaderDeadlineAcceptor<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeaderDeadlineAcceptor<A> {
    type Io = HeaderDeadline<A::Io>;

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
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((HeaderDeadline::new(io, self.timeout), local, remote, scheme))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: the clock starts at the next byte.
    Idle,
    /// Receiving a head; `matched` bytes of `\r\n\r\n` seen so far.
    Head { matched: usize },
    /// The head is in; the body and the handler run without this clock.
    Request,
    /// Switched protocols (WebSocket): no more HTTP heads on this connection.
    Upgraded,
}

pub struct HeaderDeadline<Io> {
    inner: Io,
    timeout: Duration,
    phase: Phase,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<Io> HeaderDeadline<Io> {
    fn new(inner: Io, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            // A connection that sends nothing at all is also a slow client.
            phase: Phase::Head { matched: 0 },
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }

    /// Follows the bytes of a head; returns once its blank line is seen.
    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let matched = match self.phase {
                Phase::Idle => {
                    self.deadline = Some(Box::pin(tokio::time::sleep_until(
                        Instant::now() + self.timeout,
                    )));
                    0
                }
                Phase::Head { matched } => matched,
                Phase::Request | Phase::Upgraded => return,
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
                self.deadline = None;
                return;
            }
            self.phase = Phase::Head { matched };
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for HeaderDeadline<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers not received in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if matches!(this.phase, Phase::Head { matched: 0 }) && new.starts_with(H2_PREFACE) {
                // HTTP/2 frames are binary: this scanner is for HTTP/1 heads only.
                this.phase = Phase::Upgraded;
                this.deadline = None;
            } else {
                this.scan(new);
            }
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.phase = after_write(this.phase, Some(buf));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]);
        this.phase = after_write(this.phase, first);
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
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

    #[tokio::test]
    async fn a_head_is_followed_across_reads() {
        let mut d = HeaderDeadline::new(tokio::io::empty(), Duration::from_secs(1));
        d.scan(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(matches!(d.phase, Phase::Head { .. }));
        d.scan(b"\n\r\nbody");
        assert_eq!(d.phase, Phase::Request);
        assert!(d.deadline.is_none());
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

//! A TCP stream that fails once neither direction has made progress for a while.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Fails with `TimedOut` when neither direction has made progress for the idle timeout:
/// a client that stops reading a response body, or stops sending one. Any byte resets
/// this timer, which is why it is not what bounds request headers: hyper's header
/// deadline does that, and a trickle cannot move it.
#[derive(Debug)]
pub struct IdleStream {
    stream: TcpStream,
    idle_timeout: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

/// The message of the error an [`IdleStream`] fails with, to tell it from others.
pub const IDLE_MESSAGE: &str = "connection idle for too long";

impl IdleStream {
    pub fn new(stream: TcpStream, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            stream,
            idle_timeout,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    /// Called when the inner stream is not ready: errors once the idle deadline passed.
    ///
    /// The timer is only re-armed when it fires early (progress moved the deadline), so the
    /// hot path costs one `Instant::now()` per successful operation.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last_progress + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, IDLE_MESSAGE));
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    fn progressed<T>(&mut self, result: T) -> Poll<T> {
        self.last_progress = Instant::now();
        Poll::Ready(result)
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => this.progressed(result),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

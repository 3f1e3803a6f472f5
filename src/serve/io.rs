//! A connection whose writes may not stall: a client that stops reading its responses (with
//! the kernel's send buffer full) is cut off after a while, instead of holding its connection
//! slot and its unsent response for ever; and a client that reads a trickle (a few bytes now
//! and then, each resetting the stall timer) is cut off once one response has taken too long.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write is pending; reset by every write that makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
    per_response: Duration,
    /// Armed by the first write of a response, cleared when the connection is flushed (hyper
    /// flushes once its buffer, the whole response, is written); progress does not reset it.
    response: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    /// `timeout` bounds a write that makes no progress, `per_response` all the writes of one
    /// response.
    pub fn new(inner: T, timeout: Duration, per_response: Duration) -> WriteDeadline<T> {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
            per_response,
            response: None,
        }
    }

    /// `Pending` from the socket: arm the deadline, or fail once it has passed.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            )));
        }
        let response = self.response.as_mut().map(|r| r.as_mut().poll(cx));
        ready!(response.unwrap_or(Poll::Pending));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client reads its response too slowly",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.response.is_none() {
            let deadline = Instant::now() + self.per_response;
            self.response = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                if matches!(ready, Poll::Ready(Ok(()))) {
                    self.response = None;
                }
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never reads: every write is pending, for ever.
    struct Stuck;

    impl AsyncRead for Stuck {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_write_that_makes_no_progress_fails_after_the_timeout() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut io =
                WriteDeadline::new(Stuck, Duration::from_millis(50), Duration::from_secs(60));
            let started = Instant::now();
            let result =
                std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"response")).await;
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= Duration::from_millis(50));
        });
    }

    /// A peer that takes one byte per write, and only every other poll: every write makes
    /// progress, so the stall timer never fires.
    struct Trickle {
        ready: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if self.ready {
                return Poll::Ready(Ok(buf.len().min(1)));
            }
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(1));
                waker.wake();
            });
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_response_read_a_trickle_at_a_time_fails_after_its_deadline() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut io = WriteDeadline::new(
                Trickle { ready: false },
                Duration::from_secs(60),
                Duration::from_millis(50),
            );
            let response = vec![b'x'; 1 << 20];
            let mut written = 0;
            let error = loop {
                let wrote = std::future::poll_fn(|cx| {
                    Pin::new(&mut io).poll_write(cx, &response[written..])
                })
                .await;
                match wrote {
                    Ok(n) => written += n,
                    Err(e) => break e,
                }
                assert!(written < response.len(), "the whole response was written");
            };
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        });
    }
}

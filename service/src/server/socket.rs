//! The accepted socket, watched: it records which reads and writes moved bytes and when the
//! bytes read reached the host, and gives up on writes the client does not read.
//!
//! The header timer and the shutdown sequence read the record: whether the client has started
//! sending its next request, whether the connection has answered yet. Admission reads the
//! arrival time, to refuse a request that waited too long unread ([`crate::admission`]).
//!
//! The arrival time is the kernel's receive timestamp (`SO_TIMESTAMPNS`), which comes with a
//! read only through `recvmsg`: tokio reads with `read`, so while arrival times are wanted (the
//! pod is refusing) a read that may start a request is made here, through nix (socket2 has
//! neither the option nor a safe `recvmsg`). It costs more than tokio's read (measured: about
//! 5 % of a small GET), so otherwise tokio reads. That read fills at most
//! [`STAMPED_READ_BYTES`], which any request head of ordinary size fits; when it fills them,
//! the rest (a large head or body) is read by tokio's own read.
//!
//! The option itself is on only while arrival times are wanted, switched at the connection's
//! next read: while any socket has it, the kernel stamps every packet the host receives, which
//! cost about 2 % of a small GET. Bytes that arrived before it was switched on, or in the
//! moment after (the kernel starts stamping from deferred work), come without a timestamp.
//!
//! hyper waits for a writable socket for ever: a client that asks for a large answer and never
//! reads it holds the connection and the whole buffered body. Here a write that stays pending
//! for the write timeout, with no byte accepted meanwhile, fails with `TimedOut`; hyper then
//! drops the connection and the body with it. Any progress starts the wait afresh, so a slow
//! but moving client is never cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::admission::Arrival;

/// The most a timestamped read takes at once. The buffer a read fills must be initialised
/// first (writing into uninitialised memory takes `unsafe`), so this bounds that work too.
const STAMPED_READ_BYTES: usize = 4096;

/// Reads and writes that moved bytes on one connection.
#[derive(Debug, Default)]
pub struct Activity {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Activity {
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn has_written(&self) -> bool {
        self.writes.load(Ordering::Relaxed) > 0
    }
}

/// A socket that counts into an [`Activity`], records its requests' [`Arrival`], and fails a
/// write stalled for the write timeout.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    arrival: Arc<Arrival>,
    write_timeout: Duration,
    /// Armed by the first pending write, cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// The last timestamped read filled its window: more is coming, read it in bulk.
    bulk: bool,
    /// `SO_TIMESTAMPNS` is on (or was asked for and refused: asked once per change).
    stamping: bool,
}

impl<S> Watched<S> {
    pub fn new(
        inner: S,
        activity: Arc<Activity>,
        arrival: Arc<Arrival>,
        write_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            arrival,
            write_timeout,
            stalled: None,
            bulk: false,
            stamping: false,
        }
    }

    /// Counts a write that moved bytes, then [`Self::watch`]es it.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.writes.fetch_add(1, Ordering::Relaxed);
        }
        self.watch(cx, result)
    }

    /// Passes a finished write through (and forgets the stall); turns a pending one into
    /// `TimedOut` once it has been pending for the whole write timeout.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Watched<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let wanted = this.arrival.wanted();
        if wanted != this.stamping {
            this.stamping = wanted;
            stamp_arrivals(&this.inner, wanted);
        }
        let result = match (this.bulk, wanted) {
            (false, true) => this.poll_read_stamped(cx, buf),
            (bulk, _) => {
                let result = Pin::new(&mut this.inner).poll_read(cx, buf);
                // The rest of a large head or body keeps its head's arrival; anything else
                // read without a timestamp has none.
                if !bulk && buf.filled().len() > before {
                    this.arrival.record(None);
                }
                this.bulk = bulk && result.is_pending();
                result
            }
        };
        if buf.filled().len() > before {
            this.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl Watched<TcpStream> {
    /// Reads as tokio would, and records the kernel's timestamp of the bytes read.
    #[cfg(target_os = "linux")]
    fn poll_read_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let window = buf.remaining().min(STAMPED_READ_BYTES);
        if window == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            std::task::ready!(self.inner.poll_read_ready(cx))?;
            let into = buf.initialize_unfilled_to(window);
            let stream = &self.inner;
            match stream.try_io(tokio::io::Interest::READABLE, || {
                stamped::receive(stream, into)
            }) {
                Ok((read, arrived)) => {
                    buf.advance(read);
                    if read > 0 {
                        self.arrival.record(arrived);
                    }
                    self.bulk = read == window;
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// No receive timestamps here: a plain read, and no request is refused for its wait.
    #[cfg(not(target_os = "linux"))]
    fn poll_read_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let _ = &self.arrival;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Asks the kernel to stamp, or to stop stamping, what arrives on `stream` with its receive
/// time. Best effort: without it no timestamp comes, and no request is refused for its wait.
fn stamp_arrivals(stream: &TcpStream, on: bool) {
    #[cfg(target_os = "linux")]
    if let Err(error) = stamped::switch(stream, on) {
        tracing::debug!(%error, on, "SO_TIMESTAMPNS not switched");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, on);
}

#[cfg(target_os = "linux")]
mod stamped {
    use std::io::{self, IoSliceMut};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};

    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
    use tokio::net::TcpStream;

    /// Room for one control message holding a `timespec`, aligned as control messages must be.
    #[repr(C, align(8))]
    struct ControlSpace([u8; 64]);

    pub fn switch(stream: &TcpStream, on: bool) -> nix::Result<()> {
        setsockopt(stream, sockopt::ReceiveTimestampns, &on)
    }

    /// One `recvmsg` into `into`: the bytes read, and the arrival time of the last segment
    /// they came from (a request head of ordinary size is one segment).
    pub fn receive(stream: &TcpStream, into: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
        let mut control = ControlSpace([0; 64]);
        let mut buffers = [IoSliceMut::new(into)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut buffers,
            Some(&mut control.0),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let arrived = message.cmsgs().ok().and_then(|mut messages| {
            messages.find_map(|message| match message {
                ControlMessageOwned::ScmTimestampns(at) => {
                    let seconds = u64::try_from(at.tv_sec()).ok()?;
                    let nanos = u32::try_from(at.tv_nsec()).ok()?;
                    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
                }
                _ => None,
            })
        });
        Ok((message.bytes, arrived))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::{Instant, SystemTime};

    use nix::sys::socket::{getsockopt, sockopt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn the_kernel_stamps_arrivals_only_while_they_are_wanted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let refusing = Arc::new(AtomicBool::new(false));
        let arrival = Arc::new(Arrival::following(Arc::clone(&refusing)));
        let mut watched = Watched::new(
            server,
            Arc::default(),
            Arc::clone(&arrival),
            Duration::from_secs(5),
        );
        let mut exchange = async |bytes: &[u8]| {
            client.write_all(bytes).await.expect("write");
            let mut read = vec![0; bytes.len()];
            watched.read_exact(&mut read).await.expect("read");
            getsockopt(&watched.inner, sockopt::ReceiveTimestampns).expect("getsockopt")
        };

        assert!(!exchange(b"served").await, "stamping while not refusing");
        refusing.store(true, Ordering::Relaxed);
        // Switched on at this read: these bytes came before it, so they may have no stamp,
        // and the kernel starts stamping a little later, from deferred work.
        assert!(exchange(b"refused").await, "no stamping while refusing");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(exchange(b"stamped").await);
            if arrival.waited(SystemTime::now).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bytes read while refusing came without their arrival time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refusing.store(false, Ordering::Relaxed);
        assert!(!exchange(b"served").await, "stamping after refusing ended");
    }
}

//! Serving connections on both ports (HTTP/1.1, optionally over TLS), and the response body
//! that lets a download fault close a connection right after an exact number of body bytes.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::exchange;
use crate::lock;
use crate::request_log::{Port, SentBytes};
use crate::simulation::Simulation;

/// Accepts connections on `listener` until the runtime shuts down.
pub(crate) async fn serve(listener: TcpListener, port: Port, tls: Option<TlsAcceptor>, sim: Arc<Simulation>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small answers (tokens, JSON) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let sim = sim.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, port, sim).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, port, sim).await,
                    Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, port: Port, sim: Arc<Simulation>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let control = Arc::new(ConnectionControl::default());
    let io = TokioIo::new(ControlledIo { inner: stream, control: control.clone(), replacing: None });
    let service = service_fn(move |request| exchange::handle(sim.clone(), port, control.clone(), request));
    // No timer, so no header read timeout: an idle keep-alive connection stays open as long as the
    // client keeps it, and a client never races the server closing it.
    let served = http1::Builder::new().serve_connection(io, service).await;
    if let Err(error) = served {
        tracing::debug!(%error, "connection closed");
    }
}

/// Lets a response close its connection, or replace what hyper writes with bytes of its own.
#[derive(Default)]
pub(crate) struct ConnectionControl {
    close_after_flush: AtomicBool,
    /// Written in place of the next answer hyper writes (the `raw` fault).
    replacement: Mutex<Option<Bytes>>,
}

impl ConnectionControl {
    /// Closes the connection once everything handed to it so far has been written.
    fn close_after_flush(&self) {
        self.close_after_flush.store(true, Ordering::Release);
    }

    /// Sends `raw` as the answer to the request being handled, exactly as it is, then closes the
    /// connection: hyper would refuse to write a malformed head. Returns the answer to give hyper
    /// in its place (its status is the one `raw` names, for the request log); what hyper writes
    /// of it is dropped.
    pub(crate) fn replace_answer(&self, raw: &[u8]) -> Response<ResponseBody> {
        *lock(&self.replacement) = Some(Bytes::copy_from_slice(raw));
        let status = raw
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| raw.strip_prefix(b"HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|digits| StatusCode::from_bytes(digits).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = Response::new(ResponseBody::with_source(Source::Closing));
        *response.status_mut() = status;
        response
    }

    fn take_replacement(&self) -> Option<Bytes> {
        lock(&self.replacement).take()
    }
}

/// The connection's I/O. hyper flushes its I/O only when its own write buffer is empty, so
/// failing that flush after [`ConnectionControl::close_after_flush`] ends the connection right
/// after the last byte the response body produced: the client sees exactly that many bytes, then
/// the connection closing. After [`ConnectionControl::replace_answer`], the replacement goes out
/// instead of what hyper writes, and the connection closes after it.
struct ControlledIo<S> {
    inner: S,
    control: Arc<ConnectionControl>,
    /// What is left to write of a replacement; `Some` from the moment one was taken.
    replacing: Option<Bytes>,
}

impl<S: AsyncWrite + Unpin> ControlledIo<S> {
    /// Takes a replacement waiting for this connection, and writes what is left of it. `Ready`
    /// once nothing of one is left to write (or there never was one).
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_none() {
            self.replacing = self.control.take_replacement();
        }
        while let Some(rest) = self.replacing.as_mut().filter(|rest| !rest.is_empty()) {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            rest.advance(written);
            if rest.is_empty() {
                self.control.close_after_flush();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ControlledIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ControlledIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.replacing.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.replacing.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Without vectored writes hyper would copy every body chunk into its own buffer.
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        if this.control.close_after_flush.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed by a download fault")));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What a streamed body sends next.
pub(crate) enum BodyEvent {
    Data(Bytes),
    /// Send nothing more and close the connection once the data before this is written.
    CloseConnection,
}

/// Every answer's body: bytes at once, or events from a task that produces a download. It counts
/// the bytes it hands to the connection, for the request log.
pub(crate) struct ResponseBody {
    source: Source,
    sent: SentBytes,
    /// The body's own length is not told to hyper, so that a `Content-Length` header set by the
    /// answer goes out as it is, even when it is not the body's (the `answer` fault); after its
    /// bytes the body never ends, so that the client reads the head and decides.
    length_as_set: bool,
}

enum Source {
    Bytes(Option<Bytes>),
    Events {
        receiver: mpsc::Receiver<BodyEvent>,
        connection: Arc<ConnectionControl>,
    },
    /// After [`BodyEvent::CloseConnection`]: never ends, so hyper neither finishes the response
    /// nor reuses the connection before it closes.
    Closing,
}

impl ResponseBody {
    pub(crate) fn empty() -> ResponseBody {
        ResponseBody::with_source(Source::Bytes(None))
    }

    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::with_source(Source::Bytes(Some(bytes)))
    }

    pub(crate) fn stream(receiver: mpsc::Receiver<BodyEvent>, connection: Arc<ConnectionControl>) -> ResponseBody {
        ResponseBody::with_source(Source::Events { receiver, connection })
    }

    /// `full`, with whatever `Content-Length` the answer's headers say (they must say one).
    pub(crate) fn full_with_length_as_set(bytes: Bytes) -> ResponseBody {
        ResponseBody { length_as_set: true, ..ResponseBody::full(bytes) }
    }

    fn with_source(source: Source) -> ResponseBody {
        ResponseBody { source, sent: SentBytes::default(), length_as_set: false }
    }

    pub(crate) fn sent_bytes(&self) -> SentBytes {
        self.sent.clone()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let event = match &mut this.source {
            Source::Bytes(None) if this.length_as_set => return Poll::Pending,
            Source::Bytes(bytes) => bytes.take().map(BodyEvent::Data),
            Source::Events { receiver, .. } => ready!(receiver.poll_recv(cx)),
            Source::Closing => return Poll::Pending,
        };
        match event {
            Some(BodyEvent::Data(data)) => {
                this.sent.add(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(BodyEvent::CloseConnection) => {
                if let Source::Events { connection, .. } = std::mem::replace(&mut this.source, Source::Closing) {
                    connection.close_after_flush();
                }
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.length_as_set && matches!(self.source, Source::Bytes(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Bytes(_) if self.length_as_set => SizeHint::default(),
            Source::Bytes(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

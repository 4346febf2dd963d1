//! Where connections come in. hyper serves every connection except one whose first request opens an
//! event stream (`GET …/events` over HTTP/1.1, without a body): the gateway answers that one itself,
//! through the same router, and writes the stream to the socket as it comes.
//!
//! Why: hyper keeps two buffers for a connection's whole life, a read buffer (to notice the client
//! closing) and a write buffer for response heads, about 24 kB as the allocator counts them, and
//! it has no setting for their size. On an idle event stream that was most of what the stream
//! cost. Answered here, a stream holds its own state and notices a close with a 64-byte read, and
//! its connection closes when the stream ends (EventSource reconnects on a new one anyway).
//! Everything else, including an event stream asked for on a connection that made earlier
//! requests, goes to hyper, with the bytes read so far put back in front.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, Version};
use axum::Router;
use futures_util::{FutureExt, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

/// The longest request head read here; a longer one goes to hyper, which decides.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
/// How long a new connection may take to send its first request head before hyper takes it over.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener axum serves: connections for hyper arrive here from the task that accepts them.
pub struct Door {
    incoming: mpsc::Receiver<(Rewound, SocketAddr)>,
    local: SocketAddr,
}

/// Closed once the door has closed and every event stream answered outside hyper has ended:
/// `axum::serve` waits only for its own connections.
pub type StreamsEnded = watch::Sender<()>;

impl Door {
    /// Accepts on `listener`, answering first-request event streams with `app`.
    pub fn open(listener: TcpListener, app: Router) -> std::io::Result<(Self, StreamsEnded)> {
        let local = listener.local_addr()?;
        let (handoff, incoming) = mpsc::channel(256);
        let (ended, open) = watch::channel(());
        tokio::spawn(accept(listener, app, handoff, open));
        Ok((Door { incoming, local }, ended))
    }
}

impl axum::serve::Listener for Door {
    type Io = Rewound;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Rewound, SocketAddr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts until axum drops the door (shutting down); each connection's first request is read in
/// a task of its own, so a slow client holds up nobody. Each task holds `open` while it runs.
async fn accept(
    listener: TcpListener,
    app: Router,
    handoff: mpsc::Sender<(Rewound, SocketAddr)>,
    open: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = handoff.closed() => return,
        };
        match accepted {
            Ok((stream, address)) => {
                let (app, handoff, open) = (app.clone(), handoff.clone(), open.clone());
                tokio::spawn(async move {
                    first_request(stream, address, app, handoff).await;
                    drop(open);
                });
            }
            // Out of descriptors, or a connection reset before it was accepted: as axum does.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Reads the connection's first request head: an event stream is answered here, anything else
/// (or a head that is slow, long or malformed) goes to hyper with what was read.
async fn first_request(
    mut stream: TcpStream,
    address: SocketAddr,
    app: Router,
    handoff: mpsc::Sender<(Rewound, SocketAddr)>,
) {
    let mut head = Vec::new();
    let read = tokio::select! {
        read = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut head)) => read,
        // Shutting down: a connection that has not asked for anything yet is let go.
        _ = handoff.closed() => return,
    };
    if let Ok(Ok(Some(request))) = read {
        drop(head);
        return answer_stream(stream, request, app).await;
    }
    let _ = handoff.send((Rewound { prefix: head, stream }, address)).await;
}

/// Reads until a whole head is in `head`: Some(request) for an event stream, None for anything else
/// (`head` then holds the bytes read, for hyper).
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<Option<Request<Body>>> {
    loop {
        // No buffer is held while a connection says nothing.
        stream.readable().await?;
        head.reserve(1024.min(MAX_HEAD - head.len()));
        match stream.try_read_buf(head) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => return Ok(event_stream(&parsed)),
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            _ => return Ok(None),
        }
    }
}

/// The request, if it asks for an event stream this door answers: GET, HTTP/1.1, a path ending in
/// `/events`, no body and no upgrade.
fn event_stream(parsed: &httparse::Request) -> Option<Request<Body>> {
    let path = parsed.path?;
    let ours = parsed.method == Some("GET")
        && parsed.version == Some(1)
        && path.split('?').next()?.ends_with("/events")
        && !parsed.headers.iter().any(|h| {
            ["content-length", "transfer-encoding", "upgrade", "expect"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
        });
    if !ours {
        return None;
    }
    let mut request = Request::builder().method(Method::GET).uri(path).version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        request = request.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    request.body(Body::empty()).ok()
}

/// Answers the request through the router and writes the answer, then closes the connection. A
/// client that closes its side ends the stream at once.
async fn answer_stream(mut stream: TcpStream, request: Request<Body>, app: Router) {
    let Ok(response) = app.oneshot(request).await;
    let (parts, body) = response.into_parts();
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let head = response_head(&Response::from_parts(parts, ()), length);
    let (mut reader, mut writer) = stream.split();
    if writer.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    let mut data = body.into_data_stream();
    let mut probe = [0u8; 64];
    loop {
        let chunk = tokio::select! {
            chunk = data.next() => chunk,
            read = reader.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        let Some(Ok(chunk)) = chunk else { break };
        // What else is ready goes in the same write: a burst (a catch-up, presence told to a
        // crowd) is one send, not one per event.
        let mut out = Vec::new();
        frame(&mut out, &chunk, length.is_none());
        let mut ended = false;
        while out.len() < COALESCE_BYTES {
            match data.next().now_or_never() {
                Some(Some(Ok(chunk))) => frame(&mut out, &chunk, length.is_none()),
                Some(_) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if out.is_empty() {
            continue;
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        if ended {
            break;
        }
    }
    if length.is_none() {
        let _ = writer.write_all(b"0\r\n\r\n").await;
    }
    let _ = writer.shutdown().await;
}

/// The most bytes of ready events gathered into one write.
const COALESCE_BYTES: usize = 16 * 1024;

/// Appends `chunk` as the body's framing has it: as it is, or as one chunk of a chunked body.
fn frame(out: &mut Vec<u8>, chunk: &[u8], chunked: bool) {
    if chunk.is_empty() {
        return;
    }
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(chunk);
    }
}

/// The status line and headers, with the framing this door uses: the body's length when known,
/// else chunked, and `connection: close`.
fn response_head(response: &Response<()>, length: Option<u64>) -> Vec<u8> {
    let status = response.status();
    let mut head =
        format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or("")).into_bytes();
    let framing = [header::CONNECTION, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];
    for (name, value) in response.headers().iter().filter(|(name, _)| !framing.contains(name)) {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT");
    let framing = match length {
        Some(length) => format!("content-length: {length}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_string(),
    };
    head.extend_from_slice(format!("{framing}connection: close\r\ndate: {date}\r\n\r\n").as_bytes());
    head
}

/// A connection for hyper: the bytes the door read first, then the socket.
pub struct Rewound {
    prefix: Vec<u8>,
    stream: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        if self.prefix.is_empty() {
            // Its allocation goes with it.
            self.prefix = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

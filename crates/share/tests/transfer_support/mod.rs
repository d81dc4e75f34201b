//! Shared helpers for the transfer tests: shared folders, real servers, and fake holders
//! that misbehave on purpose.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use highway_share::transfer::{FileServer, FileSource, ServedFile, ServerConfig, compute_outboard};
use highway_wire::ContentId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A [`FileSource`] backed by a map, standing in for the share index.
#[derive(Debug, Default)]
pub struct MapSource(pub std::sync::Mutex<HashMap<ContentId, ServedFile>>);

impl MapSource {
    pub fn insert(&self, id: ContentId, path: PathBuf, size: u64) {
        self.0.lock().unwrap().insert(
            id,
            ServedFile {
                path,
                size,
                outboard: None,
            },
        );
    }
}

impl FileSource for MapSource {
    fn open(&self, id: &ContentId) -> Option<ServedFile> {
        self.0.lock().unwrap().get(id).cloned()
    }
}

/// Writes `content` as `name` under `root` and indexes it in `source`.
pub fn share(source: &MapSource, root: &Path, name: &str, content: &[u8]) -> ContentId {
    let path = root.join(name);
    std::fs::write(&path, content).unwrap();
    let id = ContentId::of(content);
    source.insert(id, path, content.len() as u64);
    id
}

/// A running file server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn start_server(config: ServerConfig, source: Arc<MapSource>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = FileServer::new(source, config).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
    Server { addr, _stop: stop }
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Sends `raw_path` exactly as given (no client-side normalisation of `..` or `%2e`) and
/// returns the status code and the whole response (head and body).
pub async fn raw_get(addr: SocketAddr, raw_path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {raw_path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// How a fake holder misbehaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Serves the truth.
    Honest,
    /// Ends every file body after this many bytes (headers promise the full length).
    CutAfter(u64),
    /// Flips a byte at this file offset in every file body that covers it.
    FlipAt(u64),
    /// Sends file bodies in 64 KiB pieces with this pause between them.
    Slow(Duration),
    /// Declares this size in the outboard response and serves ranges against it.
    DeclareSize(u64),
    /// Serves this (encoded) outboard instead of the true one.
    OtherOutboard(Vec<u8>),
}

/// A hand-written HTTP/1.1 holder with one file, for faults the real server never makes.
#[derive(Debug)]
pub struct FakeHolder {
    pub addr: SocketAddr,
    /// File body bytes written to sockets so far (not counting outboards or headers).
    pub served: Arc<AtomicU64>,
}

pub async fn fake_holder(data: Arc<Vec<u8>>, behaviour: Behaviour) -> FakeHolder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let id = ContentId::of(&data);
    let outboard = Arc::new(match &behaviour {
        Behaviour::OtherOutboard(encoded) => encoded.clone(),
        Behaviour::DeclareSize(size) => {
            let mut encoded = compute_outboard(&data[..], data.len() as u64)
                .unwrap()
                .encode();
            encoded[..8].copy_from_slice(&size.to_le_bytes());
            encoded
        }
        _ => compute_outboard(&data[..], data.len() as u64)
            .unwrap()
            .encode(),
    });
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (data, outboard, behaviour, counter) = (
                Arc::clone(&data),
                Arc::clone(&outboard),
                behaviour.clone(),
                Arc::clone(&counter),
            );
            tokio::spawn(async move {
                let _ = serve_one(stream, id, &data, &outboard, &behaviour, &counter).await;
            });
        }
    });
    FakeHolder { addr, served }
}

async fn serve_one(
    stream: TcpStream,
    id: ContentId,
    data: &[u8],
    outboard: &[u8],
    behaviour: &Behaviour,
    served: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    let mut stream = reader.into_inner();
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    if path == format!("/v1/outboard/{id}") {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            outboard.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(outboard).await?;
        return stream.shutdown().await;
    }
    if path != format!("/v1/files/{id}") {
        let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let size = match behaviour {
        Behaviour::DeclareSize(size) => *size,
        _ => data.len() as u64,
    };
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap();
            let a: u64 = a.parse().unwrap();
            let b: u64 = if b.is_empty() {
                size - 1
            } else {
                b.parse().unwrap()
            };
            (a, b.min(size - 1))
        }
        None => (0, size - 1),
    };
    let status = if range.is_some() {
        format!("206 Partial Content\r\nContent-Range: bytes {start}-{end}/{size}")
    } else {
        "200 OK".to_owned()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        end - start + 1
    );
    stream.write_all(head.as_bytes()).await?;
    let mut body = data[start as usize..=end as usize].to_vec();
    if let Behaviour::FlipAt(at) = behaviour
        && (start..=end).contains(at)
    {
        body[(at - start) as usize] ^= 0xff;
    }
    if let Behaviour::CutAfter(n) = behaviour {
        body.truncate(*n as usize);
    }
    for piece in body.chunks(64 * 1024) {
        if let Behaviour::Slow(pause) = behaviour {
            tokio::time::sleep(*pause).await;
        }
        stream.write_all(piece).await?;
        served.fetch_add(piece.len() as u64, Ordering::Relaxed);
    }
    stream.shutdown().await
}

pub fn served(holder: &FakeHolder) -> u64 {
    holder.served.load(Ordering::Relaxed)
}

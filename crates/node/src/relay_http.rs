//! The small HTTP/1.1 subset the relay speaks on the TCP port: one request per connection,
//! its head read within a size and time bound, its path mapped to a [`Route`]. The relay
//! passes requests on byte for byte, so it parses only what it must: the request line,
//! the headers it rewrites, and a push's tiny JSON body.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use highway_wire::{ContentId, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest request head (request line and headers), and a push body.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 512;
/// Time for the whole head to arrive (a client trickling it is cut off).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers not passed on: they concern one hop, and the relay closes after one answer.
const HOP_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "content-length",
];

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a request asks the relay endpoint for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v1/relay/{holder}/v1/{files|outboard}/{hash}`: fetch through this relay.
    Relay { holder: NodeId, target: String },
    /// `POST /v1/relay/{holder}/push`: have the holder connect to the asker.
    Push { holder: NodeId },
    /// `GET /v1/pushed/{holder}/{relay ip}/{relay port}/v1/{files|outboard}/{hash}`: this
    /// node's own downloader, fetching over a push it asks `relay` for.
    Pushed {
        holder: NodeId,
        relay: SocketAddr,
        target: String,
    },
}

type Refusal = (u16, &'static str, String);

fn not_found(path: &str) -> Refusal {
    (
        404,
        "not_found",
        format!(
            "no such relay endpoint {path:?}; see docs/PROTOCOL.md, \"Relays\" \
             (GET /v1/relay/{{holder}}/v1/files/{{hash}})"
        ),
    )
}

/// `v1/files/{hash}` or `v1/outboard/{hash}` as the holder's own path.
fn file_target(parts: &[&str]) -> Option<String> {
    match parts {
        ["v1", kind @ ("files" | "outboard"), hash] => {
            let id: ContentId = hash.parse().ok()?;
            Some(format!("/v1/{kind}/{id}"))
        }
        _ => None,
    }
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn route(&self) -> Result<Route, Refusal> {
        let path = self.path.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let holder = |s: &str| -> Result<NodeId, Refusal> {
            s.parse().map_err(|_| {
                (
                    400,
                    "bad_request",
                    format!("{s:?} is not a node id (64 hex characters)"),
                )
            })
        };
        match (self.method.as_str(), parts.as_slice()) {
            ("GET", ["v1", "relay", id, rest @ ..]) => {
                let target = file_target(rest).ok_or_else(|| not_found(path))?;
                Ok(Route::Relay {
                    holder: holder(id)?,
                    target,
                })
            }
            ("POST", ["v1", "relay", id, "push"]) => Ok(Route::Push {
                holder: holder(id)?,
            }),
            ("GET", ["v1", "pushed", id, ip, port, rest @ ..]) => {
                let target = file_target(rest).ok_or_else(|| not_found(path))?;
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| (400, "bad_request", format!("{ip:?} is not an IP address")))?;
                let port: u16 = port
                    .parse()
                    .map_err(|_| (400, "bad_request", format!("{port:?} is not a port")))?;
                Ok(Route::Pushed {
                    holder: holder(id)?,
                    relay: SocketAddr::new(ip, port),
                    target,
                })
            }
            _ => Err(not_found(path)),
        }
    }

    /// A push's body: `{"token": "<32 hex>", "to": "<ip:port>"}`.
    pub fn push_body(&self) -> Result<([u8; 16], SocketAddr), Refusal> {
        #[derive(serde::Deserialize)]
        struct Push {
            token: String,
            to: SocketAddr,
        }
        let bad = |what: String| (400, "bad_request", what);
        let push: Push = serde_json::from_slice(&self.body).map_err(|e| {
            bad(format!(
                "a push body is {{\"token\": hex, \"to\": \"ip:port\"}}: {e}"
            ))
        })?;
        let mut token = [0u8; 16];
        hex::decode_to_slice(&push.token, &mut token)
            .map_err(|_| bad("token must be 32 hex characters".into()))?;
        Ok((token, push.to))
    }

    /// The request as the holder's file server should see it: its own path, the
    /// client's end-to-end headers (`Range`), and a close after the answer.
    pub fn rewritten(&self, target: &str) -> Vec<u8> {
        let mut out = format!("{} {target} HTTP/1.1\r\n", self.method);
        for (name, value) in &self.headers {
            if HOP_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Reads one request head (and, for a push, its body) within the size and time bounds.
pub(crate) async fn read_head(stream: &mut TcpStream) -> Result<Head, String> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if buf.len() >= MAX_HEAD {
                return Err(format!("the request head is over {MAX_HEAD} bytes"));
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the request: {e}"))?;
            if n == 0 {
                return Err("the connection closed mid-request".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let mut head = parse(&buf[..end])?;
        let mut body = buf[end + 4..].to_vec();
        let length: usize = match head.header("content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| "bad content-length".to_string())?,
            None => 0,
        };
        if length > MAX_BODY {
            return Err(format!("a body over {MAX_BODY} bytes"));
        }
        while body.len() < length {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the body: {e}"))?;
            if n == 0 {
                return Err("the connection closed mid-body".to_string());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        head.body = body;
        Ok(head)
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| {
            format!(
                "the request did not arrive within {}s",
                HEAD_TIMEOUT.as_secs()
            )
        })?
}

fn parse(bytes: &[u8]) -> Result<Head, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the request head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut words = request.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("malformed request line {request:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(format!("malformed header name {name:?}"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    })
}

/// A complete error answer: status, and `{"error", "message"}` as the other APIs give.
pub(crate) fn error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str) -> Head {
        Head {
            method: method.into(),
            path: path.into(),
            headers: vec![
                ("Host".into(), "x".into()),
                ("Range".into(), "bytes=5-".into()),
                ("Connection".into(), "keep-alive".into()),
            ],
            body: Vec::new(),
        }
    }

    const ID: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn routes_map_paths_and_refuse_the_rest() {
        let relay = head("GET", &format!("/v1/relay/{ID}/v1/files/{HASH}"));
        assert_eq!(
            relay.route(),
            Ok(Route::Relay {
                holder: ID.parse().unwrap(),
                target: format!("/v1/files/{HASH}"),
            })
        );
        let pushed = head(
            "GET",
            &format!("/v1/pushed/{ID}/2001:db8::1/7001/v1/outboard/{HASH}"),
        );
        assert!(matches!(
            pushed.route(),
            Ok(Route::Pushed { relay, .. }) if relay == "[2001:db8::1]:7001".parse().unwrap()
        ));
        assert_eq!(
            head("POST", &format!("/v1/relay/{ID}/push")).route(),
            Ok(Route::Push {
                holder: ID.parse().unwrap()
            })
        );
        for bad in [
            format!("/v1/relay/{ID}/etc/passwd"),
            format!("/v1/relay/{ID}/v1/files/../../x"),
            format!("/v1/relay/{ID}/v1/files/{HASH}/extra"),
            "/v1/relay/nothex/v1/files/x".to_string(),
            "/".to_string(),
        ] {
            assert!(head("GET", &bad).route().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rewritten_request_keeps_range_and_closes() {
        let text = String::from_utf8(head("GET", "/x").rewritten("/v1/files/abc")).unwrap();
        assert!(text.starts_with("GET /v1/files/abc HTTP/1.1\r\n"));
        assert!(text.contains("Range: bytes=5-\r\n"));
        assert!(!text.to_lowercase().contains("keep-alive"));
        assert!(text.ends_with("connection: close\r\n\r\n"));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "GET /\r\n".as_bytes(),
            b"GET / HTTP/2\r\n",
            b"GET / HTTP/1.1\r\nno colon here",
            b"GET / HTTP/1.1 extra\r\n",
            &[0xff, 0xfe],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a").is_ok());
    }
}

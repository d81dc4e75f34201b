//! A typed client of a node's control API (docs/PROTOCOL.md, "Node control API"), used by
//! the one-shot commands, the shell and the demo.
//!
//! Every call is one HTTP request to a loopback address; errors say whether the node
//! could not be reached, refused the request (its `{"error", "message"}` answer), or
//! answered something this version cannot read.

use crate::terminal_text::safe;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use highway_node::views::{
    DownloadRequest, DownloadView, FilesView, SearchPage, SearchRequest, SearchStarted,
    ShareRequest, TicketJson, TicketRequest,
};
use highway_node::{LeaveView, NeighbourJson, StatusView};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `POST /v1/leave` answers once the neighbours and the Gatekeeper were told, which the
/// node bounds at 10 s.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait the node accepts on `GET /v1/search/{id}`.
pub const MAX_SEARCH_WAIT: Duration = Duration::from_secs(10);
/// Slack on top of a long-poll's wait before the client gives up on the answer.
const LONG_POLL_SLACK: Duration = Duration::from_secs(5);

/// Why a control API call failed. Nothing was retried.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "{0} is not a loopback address; a node's control API only listens on loopback \
         (give the `control:` address `highway node` printed, e.g. 127.0.0.1:PORT)"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "cannot reach a node's control API at {addr} ({reason}); is `highway node` running? \
         it prints its control address (`control: ADDR`) at start"
    )]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Refused(Box<Refusal>),
    #[error(
        "{} answered {} with {} and no JSON ({}); is {} the control address of a Highway node?",
        .0.call.addr, .0.call, .0.status, .0.reason, .0.call.addr
    )]
    NotJson(Box<BadAnswer>),
    #[error(
        "{} answered {} with JSON this version cannot read ({}); are `highway` and the node \
         the same version?",
        .0.call.addr, .0.call, .0.reason
    )]
    Unexpected(Box<BadAnswer>),
    #[error(
        "cannot read the control token from {} ({reason}); give the token itself, or the \
         file `highway node` wrote it to",
        path.display()
    )]
    TokenFile { path: PathBuf, reason: String },
    #[error("cannot set up an HTTP client: {0}")]
    Client(String),
    #[error("cannot send this request: {0}")]
    Body(String),
}

impl ControlError {
    /// The node's error code when it refused the request (`not_found`, `stopped`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused(refusal) => Some(&refusal.code),
            _ => None,
        }
    }
}

/// One request: where it went and what it asked.
#[derive(Debug, Clone)]
pub struct Call {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The node's `{"error", "message"}` answer to a request it refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} (the node at {} answered {call} with {status} {})",
    safe(message), call.addr, safe(code)
)]
pub struct Refusal {
    pub call: Call,
    pub status: u16,
    /// The machine-readable `error` field, e.g. `not_found`.
    pub code: String,
    pub message: String,
}

/// An answer that is not what the API promises.
#[derive(Debug, Clone)]
pub struct BadAnswer {
    pub call: Call,
    pub status: u16,
    pub reason: String,
}

/// `--node` and `--token`: which running node a command talks to, and how it proves it
/// may. Shared by every such command.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's control address, as `highway node` printed it (`control: ADDR`).
    #[arg(long, env = "HIGHWAY_NODE", value_name = "CONTROL_ADDR")]
    pub node: SocketAddr,
    #[command(flatten)]
    pub token: TokenArg,
}

impl NodeArgs {
    /// A client of that node's control API.
    pub fn client(&self) -> Result<ControlClient, ControlError> {
        ControlClient::new(self.node, &self.token)
    }
}

/// `--token`, shared by every command that talks to a node.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenArg {
    /// The node's control token, or the path of the file holding it [default: the file
    /// the node wrote for its user, found from the control address]. Prefer the
    /// HIGHWAY_TOKEN variable or a path: other users can see command lines.
    #[arg(
        long,
        value_name = "TOKEN|FILE",
        env = highway_node::token::TOKEN_ENV,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// The token to send to the node at `addr`: `given` (a token, or a file holding one),
/// else the one in the file the node wrote for this user, else none (the node's 401 then
/// says where the token is).
pub fn find_token(addr: SocketAddr, given: Option<&str>) -> Result<Option<String>, ControlError> {
    if let Some(given) = given.map(str::trim) {
        if highway_node::token::looks_like_token(given) {
            return Ok(Some(given.to_string()));
        }
        let path = Path::new(given);
        return highway_node::token::read(path)
            .map(Some)
            .map_err(|e| ControlError::TokenFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
    }
    // Not finding the default file is not an error here: this user may not be the
    // node's, and the node's refusal explains what to do.
    Ok(highway_node::token::default_path(addr)
        .and_then(|path| highway_node::token::read(&path).ok()))
}

/// The control API of one node.
#[derive(Debug, Clone)]
pub struct ControlClient {
    addr: SocketAddr,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer TOKEN`.
    token: Option<String>,
}

/// `e` and its causes, `: `-separated (reqwest's own message hides the cause, such as
/// "Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl ControlClient {
    /// A client of the control API at `addr`, which must be a loopback address (the API
    /// never listens elsewhere, so anything else is a mistake worth naming), with the
    /// token `--token` gave (a token or a file) or else the one [`find_token`] finds.
    pub fn new(addr: SocketAddr, token: &TokenArg) -> Result<Self, ControlError> {
        let token = find_token(addr, token.token.as_deref())?;
        Self::build(addr, token)
    }

    /// A client with a known token (a node running in this process).
    pub fn with_token(addr: SocketAddr, token: &str) -> Result<Self, ControlError> {
        Self::build(addr, Some(token.to_string()))
    }

    fn build(addr: SocketAddr, token: Option<String>) -> Result<Self, ControlError> {
        if !addr.ip().is_loopback() {
            return Err(ControlError::NotLoopback(addr));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| ControlError::Client(error_chain(&e)))?;
        Ok(Self { addr, http, token })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request and returns the JSON of a 2xx answer; anything else is an error
    /// naming what went wrong.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, ControlError> {
        let url = format!("http://{}{path}", self.addr);
        let call = || Call {
            addr: self.addr,
            method: method.clone(),
            path: path.to_string(),
        };
        let mut request = self.http.request(method.clone(), &url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ControlError::Unreachable {
                addr: self.addr,
                reason: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ControlError::Unreachable {
                addr: self.addr,
                reason: error_chain(&e),
            })?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ControlError::NotJson(Box::new(BadAnswer {
                call: call(),
                status: status.as_u16(),
                reason: e.to_string(),
            }))
        })?;
        if !status.is_success() {
            let text = |field: &str| json[field].as_str().map(str::to_string);
            return Err(ControlError::Refused(Box::new(Refusal {
                call: call(),
                status: status.as_u16(),
                code: text("error").unwrap_or_else(|| "unknown".to_string()),
                message: text("message").unwrap_or_else(|| format!("no message: {json}")),
            })));
        }
        Ok(json)
    }

    /// The JSON body of a request (it fails only on paths that are not UTF-8).
    fn body(request: &impl Serialize) -> Result<Option<serde_json::Value>, ControlError> {
        serde_json::to_value(request)
            .map(Some)
            .map_err(|e| ControlError::Body(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: serde_json::Value,
    ) -> Result<T, ControlError> {
        serde_json::from_value(json).map_err(|e| {
            ControlError::Unexpected(Box::new(BadAnswer {
                call: Call {
                    addr: self.addr,
                    method,
                    path: path.to_string(),
                },
                status: 200,
                reason: e.to_string(),
            }))
        })
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, ControlError> {
        let json = self.call(method.clone(), path, body, timeout).await?;
        self.decode(method, path, json)
    }

    /// The raw JSON of `GET path` (for `--json` output, which keeps unknown fields).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ControlError> {
        self.call(Method::GET, path, None, REQUEST_TIMEOUT).await
    }

    /// `GET path`, both as raw JSON and typed.
    pub async fn get_both<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(serde_json::Value, T), ControlError> {
        let json = self.get_json(path).await?;
        let typed = self.decode(Method::GET, path, json.clone())?;
        Ok((json, typed))
    }

    pub async fn status(&self) -> Result<StatusView, ControlError> {
        self.typed(Method::GET, "/v1/status", None, REQUEST_TIMEOUT)
            .await
    }

    pub async fn neighbors(&self) -> Result<Vec<NeighbourJson>, ControlError> {
        self.typed(Method::GET, "/v1/neighbors", None, REQUEST_TIMEOUT)
            .await
    }

    /// Makes the node leave the overlay; it exits after answering.
    pub async fn leave(&self) -> Result<LeaveView, ControlError> {
        self.typed(Method::POST, "/v1/leave", None, LEAVE_TIMEOUT)
            .await
    }

    pub async fn start_search(&self, request: &SearchRequest) -> Result<String, ControlError> {
        let started: SearchStarted = self
            .typed(
                Method::POST,
                "/v1/search",
                Self::body(request)?,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(started.search)
    }

    /// The hits of search `id` from index `after` on; when there are none yet, the node
    /// waits up to `wait` (at most [`MAX_SEARCH_WAIT`]) for one or for the end.
    pub async fn search_page(
        &self,
        id: &str,
        after: usize,
        wait: Duration,
    ) -> Result<SearchPage, ControlError> {
        let wait = wait.min(MAX_SEARCH_WAIT);
        let path = format!(
            "/v1/search/{id}?after={after}&wait_ms={}",
            crate::units::millis(wait)
        );
        self.typed(Method::GET, &path, None, wait + LONG_POLL_SLACK)
            .await
    }

    pub async fn start_download(
        &self,
        request: &DownloadRequest,
    ) -> Result<DownloadView, ControlError> {
        self.typed(
            Method::POST,
            "/v1/downloads",
            Self::body(request)?,
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn downloads(&self) -> Result<Vec<DownloadView>, ControlError> {
        self.typed(Method::GET, "/v1/downloads", None, REQUEST_TIMEOUT)
            .await
    }

    pub async fn download(&self, id: u64) -> Result<DownloadView, ControlError> {
        let path = format!("/v1/downloads/{id}");
        self.typed(Method::GET, &path, None, REQUEST_TIMEOUT).await
    }

    /// Cancels download `id` (its `.part` stays, to resume).
    pub async fn cancel_download(&self, id: u64) -> Result<DownloadView, ControlError> {
        let path = format!("/v1/downloads/{id}");
        self.typed(Method::DELETE, &path, None, REQUEST_TIMEOUT)
            .await
    }

    /// `POST /v1/downloads/{id}/pause` or `/resume`.
    pub async fn pause_download(&self, id: u64, pause: bool) -> Result<DownloadView, ControlError> {
        let verb = if pause { "pause" } else { "resume" };
        let path = format!("/v1/downloads/{id}/{verb}");
        self.typed(Method::POST, &path, None, REQUEST_TIMEOUT).await
    }

    pub async fn files(&self) -> Result<FilesView, ControlError> {
        self.typed(Method::GET, "/v1/files", None, REQUEST_TIMEOUT)
            .await
    }

    /// Tickets for the shared file `path`, or every file under the shared folder `path`.
    pub async fn tickets(&self, path: PathBuf) -> Result<Vec<TicketJson>, ControlError> {
        let request = TicketRequest { path };
        self.typed(
            Method::POST,
            "/v1/tickets",
            Self::body(&request)?,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Shares `root` (or switches to it).
    pub async fn share(&self, root: PathBuf) -> Result<FilesView, ControlError> {
        let request = ShareRequest { root };
        self.typed(
            Method::POST,
            "/v1/share",
            Self::body(&request)?,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Stops sharing.
    pub async fn unshare(&self) -> Result<FilesView, ControlError> {
        self.typed(Method::DELETE, "/v1/share", None, REQUEST_TIMEOUT)
            .await
    }

    pub async fn rescan(&self) -> Result<FilesView, ControlError> {
        self.typed(Method::POST, "/v1/rescan", None, REQUEST_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_address_off_loopback_is_refused_with_a_hint() {
        let err =
            ControlClient::new("10.0.0.1:7800".parse().unwrap(), &TokenArg::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a loopback address"), "{text}");
        assert!(text.contains("127.0.0.1:PORT"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_node_is_named_with_the_cause_and_a_hint() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let client = ControlClient::new(addr, &TokenArg::default()).unwrap();
        let text = client.status().await.unwrap_err().to_string();
        assert!(
            text.starts_with(&format!(
                "cannot reach a node's control API at 127.0.0.1:{port} ("
            )),
            "{text}"
        );
        assert!(text.contains("is `highway node` running?"), "{text}");
    }

    #[test]
    fn a_token_is_taken_as_given_or_read_from_the_file_named() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let token = "0123456789abcdef".repeat(4);
        assert_eq!(find_token(addr, Some(&token)).unwrap(), Some(token.clone()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        let path = file.display().to_string();
        assert_eq!(find_token(addr, Some(&path)).unwrap(), Some(token));
        let missing = dir.path().join("missing").display().to_string();
        let err = find_token(addr, Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("cannot read the control token from"), "{err}");
    }
}

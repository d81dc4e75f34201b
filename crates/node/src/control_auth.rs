//! The control API's bearer token check: every request must carry
//! `Authorization: Bearer <token>` (see [`crate::token`]); `GET /metrics` too unless the
//! node was started with `--open-metrics`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::control::error;
use crate::owner::Counters;
use crate::token::{ControlToken, TOKEN_ENV, same};

/// What the check needs.
#[derive(Debug)]
pub(crate) struct Auth {
    pub token: Arc<ControlToken>,
    /// `GET /metrics` without the token.
    pub open_metrics: bool,
    /// Where refusals are counted (`control_unauthorized`).
    pub counters: Arc<Counters>,
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

pub(crate) async fn require_token(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.open_metrics && request.method() == Method::GET && request.uri().path() == "/metrics" {
        return next.run(request).await;
    }
    let problem = match bearer(&request) {
        Some(token) if same(&auth.token.secret, token) => return next.run(request).await,
        Some(_) => "the control token is wrong (a node makes a new one each time it starts)",
        None if request.headers().contains_key(header::AUTHORIZATION) => {
            "the Authorization header is not `Bearer TOKEN`"
        }
        None => "no control token was sent",
    };
    auth.counters
        .control_unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let message = format!(
        "{problem}; run the command as the node's user (it finds the token itself), or pass \
         --token / {TOKEN_ENV} (the token, or the path of its file); the token is in {}",
        auth.token.file.display()
    );
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"highway-control\""),
    );
    response
}

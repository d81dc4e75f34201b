//! `POST /v1/tickets`: tickets for files this node shares (issue 13). A ticket is this
//! node's own hit for the file — content hash, size, path in the share, and how to reach
//! the holder (file server, dialable or not, relays) — as the core makes hits for
//! searchers, encoded by `highway_wire::peer::ticket`.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use highway_wire::peer::ticket::Ticket;
use tokio::sync::oneshot;

use crate::control::{ControlState, error, stopped};
use crate::owner::Msg;
use crate::sharing::hit_name;
use crate::views::{TicketJson, TicketRequest};

/// Most tickets one request returns (a folder with more files gets the first, by path).
pub const MAX_TICKETS: usize = 1000;

pub(crate) async fn tickets(
    State(state): State<ControlState>,
    body: Result<axum::Json<TicketRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(request) = match body {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not a ticket request: {e}"),
            );
        }
    };
    let Some(share) = state.app.sharing.share().await else {
        return error(
            StatusCode::CONFLICT,
            "not_sharing",
            "nothing is shared, so there is nothing to give a ticket for; share a folder \
             first (`highway share FOLDER`)",
        );
    };
    let rel = match inside(share.root(), &request.path) {
        Ok(rel) => rel,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let mut files: Vec<_> = share
        .files()
        .into_iter()
        .filter(|f| f.rel_path.starts_with(&rel))
        .collect();
    if files.is_empty() {
        let message = if share.progress().borrow().is_done() {
            format!(
                "no shared file at {} (hidden files, partial downloads and files the node \
                 cannot read are not shared; `files` lists what is)",
                request.path.display()
            )
        } else {
            format!(
                "{} is not indexed yet: the node is still hashing its share; try again in \
                 a moment",
                request.path.display()
            )
        };
        return error(StatusCode::NOT_FOUND, "not_found", message);
    }
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let mut out = Vec::new();
    for file in files.into_iter().take(MAX_TICKETS) {
        let (reply, answer) = oneshot::channel();
        let asked = Msg::OwnHits {
            content: file.content,
            reply,
        };
        if state.owner.send(asked).await.is_err() {
            return stopped();
        }
        let Ok(mut hits) = answer.await else {
            return stopped();
        };
        let Some(mut hit) = hits.pop() else {
            // Unshared or changed since the listing: no ticket for it.
            continue;
        };
        hit.name = hit_name(&file.rel_path, &file.name);
        let ticket = Ticket(hit);
        out.push(TicketJson {
            link: ticket.link(),
            ticket: ticket.to_string(),
            name: ticket.0.name.clone(),
            size: ticket.0.size,
            hash: ticket.0.content,
        });
    }
    axum::Json(out).into_response()
}

/// `path` relative to the share `root`, after symlinks: an error naming both otherwise.
fn inside(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let resolved =
        std::fs::canonicalize(path).map_err(|e| format!("cannot find {}: {e}", path.display()))?;
    resolved
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .map_err(|_| {
            format!(
                "{} is not in the shared folder {}; tickets name shared files (`highway \
                 share FOLDER` shares another folder)",
                path.display(),
                root.display()
            )
        })
}

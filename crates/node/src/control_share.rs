//! The control API's search, download and share endpoints (JSON in [`crate::views`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use highway_core::SearchRequest as CoreSearch;
use highway_wire::peer::QueryTarget;
use highway_wire::peer::search::{MAX_QUERY_TEXT, MAX_TTL};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::confine::{ShareRootError, ShareRoots};
use crate::control::{ControlState, error, stopped};
use crate::downloads::{DownloadError, Downloads, StateError};
use crate::owner::Msg;
use crate::searches::{Searches, id_hex};
use crate::sharing::Sharing;
use crate::views::{DownloadRequest, DownloadView, SearchRequest, SearchStarted, ShareRequest};

/// Default and largest search timeout.
pub const DEFAULT_SEARCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SEARCH_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RESULTS: u32 = 200;
const MAX_RESULTS: u32 = 1000;
/// Longest long-poll of `GET /v1/search/{id}`.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// What the share endpoints work on, shared by all handlers.
#[derive(Debug)]
pub(crate) struct App {
    pub sharing: Sharing,
    pub searches: Arc<Searches>,
    pub downloads: Arc<Downloads>,
    /// What `POST /v1/share` may share.
    pub share_roots: ShareRoots,
}

pub(crate) fn routes() -> Router<ControlState> {
    Router::new()
        .route("/v1/search", post(start_search))
        .route("/v1/search/{id}", get(search_page))
        .route("/v1/searches", get(list_searches))
        .route("/v1/downloads", post(start_download).get(list_downloads))
        .route(
            "/v1/downloads/{id}",
            get(one_download).delete(cancel_download),
        )
        .route("/v1/downloads/{id}/pause", post(pause_download))
        .route("/v1/downloads/{id}/resume", post(resume_download))
        .route("/v1/files", get(files))
        .route("/v1/share", post(start_share).delete(stop_share))
        .route("/v1/rescan", post(rescan))
        .route("/v1/tickets", post(crate::tickets::tickets))
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", message)
}

/// Turns the API's request into the core's, checking every field.
fn core_search(request: SearchRequest) -> Result<CoreSearch, String> {
    let target = match (request.query, request.hash) {
        (Some(_), Some(_)) => return Err("give either \"query\" or \"hash\", not both".into()),
        (None, None) => {
            return Err("give \"query\" (keywords) or \"hash\" (a content hash)".into());
        }
        (Some(text), None) => {
            if text.len() > MAX_QUERY_TEXT {
                return Err(format!(
                    "the query is {} bytes; at most {MAX_QUERY_TEXT} are allowed",
                    text.len()
                ));
            }
            if highway_wire::tokenize::tokens(&text).is_empty() {
                return Err("the query has no keywords (letters or digits)".into());
            }
            // A pasted content hash is a search for that file, not for a name holding
            // those 64 characters (which no name does).
            match text.trim().parse::<highway_wire::ContentId>() {
                Ok(hash) => QueryTarget::Hash(hash),
                Err(_) => QueryTarget::Keywords(text),
            }
        }
        (None, Some(hash)) => QueryTarget::Hash(hash),
    };
    if let Some(ttl) = request.ttl
        && !(1..=MAX_TTL).contains(&ttl)
    {
        return Err(format!("ttl {ttl} must be between 1 and {MAX_TTL}"));
    }
    let timeout = request
        .timeout_ms
        .map_or(DEFAULT_SEARCH_TIMEOUT, Duration::from_millis);
    if timeout.is_zero() || timeout > MAX_SEARCH_TIMEOUT {
        return Err(format!(
            "timeout_ms must be between 1 and {}",
            MAX_SEARCH_TIMEOUT.as_millis()
        ));
    }
    let max_results = request.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max_results) {
        return Err(format!("max_results must be between 1 and {MAX_RESULTS}"));
    }
    Ok(CoreSearch {
        target,
        ttl: request.ttl,
        timeout,
        max_results,
    })
}

async fn start_search(
    State(state): State<ControlState>,
    body: Result<axum::Json<SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(request) = match body {
        Ok(body) => body,
        Err(e) => return bad_request(format!("the body is not a search request: {e}")),
    };
    let request = match core_search(request) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    let (reply, answer) = oneshot::channel();
    if state
        .owner
        .send(Msg::Search { request, reply })
        .await
        .is_err()
    {
        return stopped();
    }
    match answer.await {
        Ok(Ok(id)) => (
            StatusCode::ACCEPTED,
            axum::Json(SearchStarted {
                search: id_hex(&id),
            }),
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, "search_refused", e.to_string()),
        Err(_) => stopped(),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: usize,
    #[serde(default)]
    wait_ms: u64,
}

async fn search_page(
    State(state): State<ControlState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    match state.app.searches.wait_page(&id, q.after, wait).await {
        Some(page) => axum::Json(page).into_response(),
        None => not_found(format!(
            "no search {id}; searches are forgotten after 64 newer ones (GET /v1/searches lists them)"
        )),
    }
}

async fn list_searches(State(state): State<ControlState>) -> Response {
    axum::Json(state.app.searches.list()).into_response()
}

async fn start_download(
    State(state): State<ControlState>,
    body: Result<axum::Json<DownloadRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(request) = match body {
        Ok(body) => body,
        Err(e) => return bad_request(format!("the body is not a download request: {e}")),
    };
    match state.app.downloads.start(request) {
        Ok(view) => (StatusCode::ACCEPTED, axum::Json(view)).into_response(),
        Err(e @ DownloadError::Busy) => error(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()),
        Err(
            e @ (DownloadError::Exists(_)
            | DownloadError::SameDestination(_)
            | DownloadError::NoFreeName { .. }),
        ) => error(StatusCode::CONFLICT, "exists", e.to_string()),
        Err(e @ (DownloadError::Destination(_) | DownloadError::Unwritable { .. })) => {
            bad_request(e.to_string())
        }
    }
}

async fn list_downloads(State(state): State<ControlState>) -> Response {
    axum::Json(state.app.downloads.list()).into_response()
}

async fn one_download(State(state): State<ControlState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_request(format!("download id {id:?} is not a number"));
    };
    match state.app.downloads.get(id) {
        Some(view) => axum::Json(view).into_response(),
        None => not_found(format!("no download {id}")),
    }
}

/// `DELETE /v1/downloads/{id}`: cancels a download that has not ended.
async fn cancel_download(state: State<ControlState>, id: Path<String>) -> Response {
    change_download(state, id, Downloads::cancel)
}

/// `POST /v1/downloads/{id}/pause`.
async fn pause_download(state: State<ControlState>, id: Path<String>) -> Response {
    change_download(state, id, Downloads::pause)
}

/// `POST /v1/downloads/{id}/resume`.
async fn resume_download(state: State<ControlState>, id: Path<String>) -> Response {
    change_download(state, id, Downloads::resume)
}

fn change_download(
    State(state): State<ControlState>,
    Path(id): Path<String>,
    change: fn(&Arc<Downloads>, u64) -> Result<DownloadView, StateError>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_request(format!("download id {id:?} is not a number"));
    };
    match change(&state.app.downloads, id) {
        Ok(view) => axum::Json(view).into_response(),
        Err(e @ StateError::Unknown(_)) => not_found(e.to_string()),
        Err(e @ StateError::Finished { .. }) => {
            error(StatusCode::CONFLICT, "finished", e.to_string())
        }
    }
}

async fn files(State(state): State<ControlState>) -> Response {
    axum::Json(state.app.sharing.view().await).into_response()
}

async fn start_share(
    State(state): State<ControlState>,
    body: Result<axum::Json<ShareRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(request) = match body {
        Ok(body) => body,
        Err(e) => return bad_request(format!("the body is not a share request: {e}")),
    };
    let root = match state.app.share_roots.check(&request.root) {
        Ok(root) => root,
        Err(e @ ShareRootError::NotAllowed { .. }) => {
            return error(StatusCode::FORBIDDEN, "forbidden", e.to_string());
        }
        Err(e @ ShareRootError::Unresolvable { .. }) => return bad_request(e.to_string()),
    };
    // The resolved path: a symlink swapped after the check cannot redirect the share.
    match state.app.sharing.start(&root).await {
        Ok(()) => axum::Json(state.app.sharing.view().await).into_response(),
        Err(e) => bad_request(format!("cannot share {}: {e}", request.root.display())),
    }
}

async fn stop_share(State(state): State<ControlState>) -> Response {
    state.app.sharing.stop().await;
    axum::Json(state.app.sharing.view().await).into_response()
}

async fn rescan(State(state): State<ControlState>) -> Response {
    if !state.app.sharing.rescan().await {
        return error(
            StatusCode::CONFLICT,
            "not_sharing",
            "nothing is shared; share a folder first (POST /v1/share)",
        );
    }
    axum::Json(state.app.sharing.view().await).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a pasted hash as the query found nothing (no name holds it).
    #[test]
    fn a_pasted_content_hash_searches_for_that_file() {
        let hash = highway_wire::ContentId::of(b"a file");
        let pasted = SearchRequest {
            query: Some(format!(" {hash}\n")),
            ..SearchRequest::default()
        };
        assert_eq!(core_search(pasted).unwrap().target, QueryTarget::Hash(hash));
        let words = SearchRequest {
            query: Some("blue monday".into()),
            ..SearchRequest::default()
        };
        assert_eq!(
            core_search(words).unwrap().target,
            QueryTarget::Keywords("blue monday".into())
        );
    }
}

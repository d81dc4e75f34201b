//! The `/v1` HTTP/JSON API, `/healthz` and `/metrics`.

mod body;
mod error;
mod handlers;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use highway_wire::gatekeeper::ErrorCode;

pub use error::ApiError;

use crate::metrics::endpoint_label;
use crate::server::App;
use crate::store::Store;

/// The Gatekeeper's routes over shared state `app`.
pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    Router::new()
        .route("/v1/join", post(handlers::join::<S>))
        .route("/v1/status", post(handlers::status::<S>))
        .route("/v1/report", post(handlers::report::<S>))
        .route("/v1/leave", post(handlers::leave::<S>))
        .route("/v1/peers", get(handlers::peers::<S>))
        .route("/healthz", get(handlers::healthz::<S>))
        .route("/livez", get(handlers::livez))
        .route("/metrics", get(handlers::metrics::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), track::<S>))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; the API lives under /v1 (join, status, report, leave, peers)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "wrong method: mutations are POST, /v1/peers, /healthz, /livez and /metrics are GET",
    )
}

/// Counts and times every request, counts refusals by reason, and sheds load beyond
/// [`crate::server::MAX_IN_FLIGHT`] concurrent requests.
async fn track<S: Store>(State(app): State<Arc<App<S>>>, req: Request, next: Next) -> Response {
    let endpoint = endpoint_label(req.uri().path());
    let started = Instant::now();
    let response = match app.in_flight.try_acquire() {
        Ok(_permit) => {
            let _counted = InFlight::enter(&app.metrics.in_flight);
            next.run(req).await
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            "too many requests in flight; retry after a short backoff",
        )
        .into_response(),
    };
    app.metrics
        .observe(endpoint, response.status().as_u16(), started.elapsed());
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        app.metrics.reject(code.as_str());
        if *code == ErrorCode::StoreUnavailable {
            app.health.mark_down();
        }
    }
    response
}

/// Counts a request in the in-flight gauge until dropped, even when the client goes away
/// and the handler is cancelled.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

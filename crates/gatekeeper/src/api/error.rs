//! Every refusal is a status code plus a JSON [`ErrorBody`] saying what was wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use highway_wire::gatekeeper::{ErrorBody, ErrorCode};

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::MalformedJson, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidField,
            message,
        )
    }

    pub fn bad_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::BadSignature, message)
    }

    pub fn missing_auth() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MissingAuth,
            "send an x-highway-signature header (ed25519 over the request) or \
             'Authorization: Bearer <lease token>' from your join",
        )
    }

    pub fn malformed_lease() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadLease,
            "the Authorization header must be 'Bearer ' and the 64 hex characters of a lease token",
        )
    }

    pub fn stale(ts_ms: u64, now_ms: u64, max_skew_ms: u64) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::StaleRequest,
            format!(
                "ts_ms {ts_ms} is {} ms away from the Gatekeeper's clock (limit {max_skew_ms} ms); \
                 check this peer's clock",
                now_ms.abs_diff(ts_ms)
            ),
        )
    }

    /// A published address was refused ([`crate::admission::check_addrs`]).
    pub fn bad_address(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadAddress, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::UnknownPeer => (StatusCode::NOT_FOUND, ErrorCode::UnknownPeer),
            StoreError::Expired => (StatusCode::GONE, ErrorCode::Expired),
            StoreError::Replayed => (StatusCode::CONFLICT, ErrorCode::Replayed),
            StoreError::BadLease => (StatusCode::UNAUTHORIZED, ErrorCode::BadLease),
            StoreError::LeaseExpired => (StatusCode::UNAUTHORIZED, ErrorCode::LeaseExpired),
            StoreError::NotANeighbour => (StatusCode::FORBIDDEN, ErrorCode::NotANeighbour),
            StoreError::AddressChangeUnsigned => {
                (StatusCode::UNAUTHORIZED, ErrorCode::SignatureRequired)
            }
            StoreError::ReportRateLimited | StoreError::JoinRateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
            }
            StoreError::TooManyPeers => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyPeers),
            StoreError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
            }
            StoreError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        // The metrics layer reads the reason from here.
        response.extensions_mut().insert(self.code);
        response
    }
}

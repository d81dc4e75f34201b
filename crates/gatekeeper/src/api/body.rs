//! Reading a request body from a hostile client: bounded, version-checked, typed.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use highway_wire::gatekeeper::{API_VERSION, ErrorCode, MAX_BODY_BYTES, VersionProbe};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::ApiError;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTooLarge,
        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads at most [`MAX_BODY_BYTES`]; a longer body is refused without reading the rest.
/// A body that has not fully arrived `within` is refused too (`408`), so a client
/// trickling it cannot hold a connection and a request slot for long.
pub async fn read(headers: &HeaderMap, body: Body, within: Duration) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!("the request body did not arrive within {within:?}; send it at once"),
        )),
    }
}

/// Parses a versioned JSON body: the version first, so a newer client hears that its
/// version is the problem rather than some field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(json_error)?;
    if probe.v != API_VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedVersion,
            format!(
                "this Gatekeeper speaks API version {API_VERSION}; the body says v={}",
                probe.v
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> ApiError {
    match e.classify() {
        Category::Data => ApiError::invalid(format!("a field has the wrong type or value: {e}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::malformed(format!("the body is not valid JSON: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use highway_wire::gatekeeper::LeaveRequest;

    #[test]
    fn each_kind_of_bad_body_gets_its_own_code() {
        let err = parse::<LeaveRequest>(b"{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedJson);
        let err = parse::<LeaveRequest>(br#"{"v":2,"id":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedVersion);
        let err = parse::<LeaveRequest>(br#"{"v":1,"id":"zz","ts_ms":1}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        let err = parse::<LeaveRequest>(br#"{"v":1,"id":7,"ts_ms":1}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        let err = parse::<LeaveRequest>(br#"{"v":"one"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
    }
}

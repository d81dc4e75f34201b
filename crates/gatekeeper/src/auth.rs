//! Proof that a mutation comes from the owner of the key it names: an ed25519 signature
//! over the path and body, or a lease token handed out by an earlier signed request.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use highway_wire::NodeId;
use highway_wire::gatekeeper::{Lease, SIGNATURE_HEADER, signing_message};

use crate::api::ApiError;
use crate::store::{Auth, NewLease};

/// Reads and checks the request's credentials. The signature is verified here; whether
/// the timestamp is new and the lease current is for the store to judge atomically.
pub fn authenticate(
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    id: &NodeId,
    ts_ms: u64,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<Auth, ApiError> {
    if now_ms.abs_diff(ts_ms) > max_skew_ms {
        return Err(ApiError::stale(ts_ms, now_ms, max_skew_ms));
    }
    if let Some(value) = headers.get(SIGNATURE_HEADER) {
        let mut signature = [0u8; 64];
        hex::decode_to_slice(value.as_bytes(), &mut signature).map_err(|_| {
            ApiError::bad_signature(format!(
                "{SIGNATURE_HEADER} must be 128 hex characters (an ed25519 signature)"
            ))
        })?;
        if !id.verify(&signing_message(path, body), &signature) {
            return Err(ApiError::bad_signature(format!(
                "the signature does not verify for id {}; sign the exact body sent, \
                 prefixed as highway_wire::gatekeeper::signing_message describes",
                id.short()
            )));
        }
        return Ok(Auth::Signed { ts_ms });
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| parse_token(t.trim()))
            .ok_or_else(ApiError::malformed_lease)?;
        return Ok(Auth::Lease {
            token_hash: *blake3::hash(&token).as_bytes(),
        });
    }
    Err(ApiError::missing_auth())
}

fn parse_token(text: &str) -> Option<[u8; 32]> {
    let mut token = [0u8; 32];
    hex::decode_to_slice(text, &mut token).ok()?;
    Some(token)
}

/// A fresh random lease: the token for the peer, the hash for the store.
pub fn new_lease(now_ms: u64, ttl_ms: u64) -> Result<(Lease, NewLease), ApiError> {
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let lease = Lease {
        token: hex::encode(token),
        expires_in_ms: ttl_ms,
    };
    let stored = NewLease {
        token_hash: *blake3::hash(&token).as_bytes(),
        expires_ms: now_ms + ttl_ms,
    };
    Ok((lease, stored))
}

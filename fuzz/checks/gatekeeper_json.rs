//! The checks of the `gatekeeper_json` fuzz target on one input, shared with the corpus
//! replay in crates/wire/tests/fuzz_corpus.rs (included there by path). Requests arrive from
//! anyone, answers from a Gatekeeper that may be hostile or an impostor: parsing and
//! validating must never panic, and whatever parses must serialise and parse back the same.

use highway_wire::gatekeeper::{
    ErrorBody, Health, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, PeersPage,
    ReportRequest, ReportResponse, StatusRequest, StatusResponse, VersionProbe,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(bytes).ok()?;
    let again: T = serde_json::from_slice(&serde_json::to_vec(&value).expect("serialises"))
        .expect("own output parses");
    assert_eq!(again, value);
    Some(value)
}

/// Parses `bytes` as every Gatekeeper body; true when some type parsed it.
pub fn json_input(bytes: &[u8]) -> bool {
    let _ = serde_json::from_slice::<VersionProbe>(bytes);
    let mut parsed = false;
    if let Some(r) = round_trip::<JoinRequest>(bytes) {
        let _ = r.validate();
        parsed = true;
    }
    if let Some(r) = round_trip::<StatusRequest>(bytes) {
        let _ = r.validate();
        parsed = true;
    }
    if let Some(r) = round_trip::<ReportRequest>(bytes) {
        let _ = r.validate();
        parsed = true;
    }
    parsed |= round_trip::<LeaveRequest>(bytes).is_some();
    parsed |= round_trip::<JoinResponse>(bytes).is_some();
    parsed |= round_trip::<StatusResponse>(bytes).is_some();
    parsed |= round_trip::<ReportResponse>(bytes).is_some();
    parsed |= round_trip::<LeaveResponse>(bytes).is_some();
    parsed |= round_trip::<PeersPage>(bytes).is_some();
    parsed |= round_trip::<Health>(bytes).is_some();
    parsed |= round_trip::<ErrorBody>(bytes).is_some();
    parsed
}

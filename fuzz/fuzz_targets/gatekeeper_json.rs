//! Gatekeeper JSON bodies: requests arrive from anyone, answers from a Gatekeeper that may
//! be hostile or an impostor. Parsing and validating must never panic, and whatever
//! parses must serialise and parse back to the same value.
#![no_main]

use highway_wire::gatekeeper::{
    ErrorBody, Health, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, PeersPage,
    ReportRequest, ReportResponse, StatusRequest, StatusResponse, VersionProbe,
};
use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|bytes: &[u8]| {
    let _ = serde_json::from_slice::<VersionProbe>(bytes);
    if let Some(r) = round_trip::<JoinRequest>(bytes) {
        let _ = r.validate();
    }
    if let Some(r) = round_trip::<StatusRequest>(bytes) {
        let _ = r.validate();
    }
    if let Some(r) = round_trip::<ReportRequest>(bytes) {
        let _ = r.validate();
    }
    let _ = round_trip::<LeaveRequest>(bytes);
    let _ = round_trip::<JoinResponse>(bytes);
    let _ = round_trip::<StatusResponse>(bytes);
    let _ = round_trip::<ReportResponse>(bytes);
    let _ = round_trip::<LeaveResponse>(bytes);
    let _ = round_trip::<PeersPage>(bytes);
    let _ = round_trip::<Health>(bytes);
    let _ = round_trip::<ErrorBody>(bytes);
});

//! The corpora of the `summary` and `gatekeeper_json` fuzz targets (fuzz/corpus/<target>),
//! replayed on every test run through the same calls as the targets, so CI exercises them
//! on the stable toolchain. The `datagram` and `handshake` corpora are replayed by the
//! library's own tests, the `range` corpus by highway-share's.

use std::path::PathBuf;

use highway_wire::summary::Summary;

// The fuzz targets' own checks, so this replay runs exactly what the fuzzer runs.
#[path = "../../../fuzz/checks/gatekeeper_json.rs"]
mod json_checks;
#[path = "../../../fuzz/checks/summary.rs"]
mod summary_checks;

use json_checks::json_input;
use summary_checks::summary_input;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir(target)).expect("corpus exists") {
        out.push(std::fs::read(entry.expect("entry").path()).expect("readable"));
    }
    out
}

#[test]
fn the_summary_corpus_replays_without_panicking() {
    let inputs = corpus("summary");
    assert!(
        inputs.len() >= seeds_summary().len(),
        "the summary corpus is missing"
    );
    for bytes in &inputs {
        summary_input(bytes);
    }
}

#[test]
fn the_gatekeeper_json_corpus_replays_without_panicking() {
    let inputs = corpus("gatekeeper_json");
    assert!(
        inputs.len() >= seeds_json().len(),
        "the gatekeeper_json corpus is missing"
    );
    // Bodies that parse exercise validation and the round trip, not only the error paths.
    // (At least one, not all: the API types may gain fields the older seeds lack.)
    let parsed = inputs.iter().filter(|b| json_input(b)).count();
    assert!(parsed >= 1, "no input of the corpus is a valid body");
}

const ID_A: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const ID_B: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

fn seeds_json() -> Vec<(&'static str, String)> {
    let addr = r#"{"ip":"127.0.0.2","udp":4000,"tcp":4001}"#;
    vec![
        (
            "join",
            format!(
                r#"{{"v":1,"id":"{ID_A}","ts_ms":1764000000000,"addrs":[{addr}],"neighbours":0,"capacity":5,"want":5}}"#
            ),
        ),
        (
            "status",
            format!(
                r#"{{"v":1,"id":"{ID_A}","ts_ms":1764000000000,"addrs":[{addr}],"neighbours":1,"capacity":5,"neighbour_ids":["{ID_B}"]}}"#
            ),
        ),
        (
            "report",
            format!(r#"{{"v":1,"id":"{ID_A}","ts_ms":1764000000000,"target":"{ID_B}"}}"#),
        ),
        (
            "leave",
            format!(r#"{{"v":1,"id":"{ID_A}","ts_ms":1764000000000}}"#),
        ),
        (
            "join-answer",
            format!(
                r#"{{"v":1,"lease":{{"token":"{ID_B}","expires_in_ms":600000}},"candidates":[{{"id":"{ID_B}","addrs":[{addr}],"neighbours":1,"capacity":5}}],"status_interval_ms":5000,"expires_after_ms":15000}}"#
            ),
        ),
        (
            "peers-page",
            format!(
                r#"{{"v":1,"peers":[{{"id":"{ID_B}","addrs":[{addr}],"neighbours":1,"capacity":5}}],"next":"{ID_B}"}}"#
            ),
        ),
        (
            "error",
            r#"{"error":"bad_signature","message":"sign it"}"#.to_owned(),
        ),
        (
            "health",
            r#"{"status":"unavailable","store":"redis","error":"down"}"#.to_owned(),
        ),
    ]
}

fn seeds_summary() -> Vec<(&'static str, Vec<u8>)> {
    let share = Summary::from_keywords(1, ["cafe", "del", "mar", "mp3"]);
    // One chunk record: version 1, chunk 0 of 1, the payload's length, the payload.
    let payload = share.encode();
    let mut record = vec![1, 0, 1];
    record.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    record.extend_from_slice(&payload);
    vec![
        ("sparse-payload", payload),
        ("empty-payload", vec![0x01]),
        (
            "documented-sparse",
            vec![0x01, 0x00, 0x00, 0xc6, 0x01, 0xb6, 0xfe, 0x03],
        ),
        ("chunk-record", record),
    ]
}

/// Regenerates the seeds: `cargo test -p highway-wire --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand"]
fn write_fuzz_seeds() {
    for (target, seeds) in [
        ("summary", seeds_summary()),
        (
            "gatekeeper_json",
            seeds_json()
                .into_iter()
                .map(|(n, s)| (n, s.into_bytes()))
                .collect(),
        ),
    ] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

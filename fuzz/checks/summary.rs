//! The checks of the `summary` fuzz target on one input, shared with the corpus replay in
//! crates/wire/tests/fuzz_corpus.rs (included there by path), so CI runs exactly what the
//! fuzzer runs. Share summaries arrive from neighbours as chunks: neither the payload
//! decoder nor the assembler may panic, and whatever decodes must survive a re-encode.

use highway_wire::summary::{MAX_ENCODED_LEN, Summary, SummaryAssembler};

/// Feeds `bytes` to the decoder as one payload, then to an assembler as chunk records:
/// version u8 | chunk u8 | chunks u8 | len u16 LE | data (cut to what is left).
pub fn summary_input(bytes: &[u8]) {
    if let Ok(summary) = Summary::decode(1, bytes) {
        let encoded = summary.encode();
        assert!(encoded.len() <= MAX_ENCODED_LEN);
        assert_eq!(Summary::decode(1, &encoded).as_ref(), Ok(&summary));
    }
    let mut assembler = SummaryAssembler::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let (head, tail) = rest.split_at(5);
        let len = usize::from(u16::from_le_bytes([head[3], head[4]])).min(tail.len());
        let (data, tail) = tail.split_at(len);
        rest = tail;
        let (version, chunk, chunks) = (u64::from(head[0]), u16::from(head[1]), u16::from(head[2]));
        if let Ok(Some(summary)) = assembler.accept(version, chunk, chunks, data) {
            assert_eq!(summary.version, version);
            assert_eq!(assembler.completed(), Some(version));
            // What was assembled re-chunks and reassembles to the same bitmap.
            let mut again = SummaryAssembler::new();
            let mut out = None;
            for (i, n, part) in summary.chunks() {
                out = again
                    .accept(version, i, n, &part)
                    .expect("own chunks are valid");
            }
            assert_eq!(out.as_ref(), Some(&summary));
        }
        assert!(assembler.missing().len() <= usize::from(u8::MAX));
    }
}

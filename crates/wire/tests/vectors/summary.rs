//! docs/vectors/summary.json: the summary's bit hashing, both encodings, chunking, and the
//! payloads and chunks a receiver must refuse.

use highway_wire::ContentId;
use highway_wire::summary::{
    CountingFilter, MAX_ENCODED_LEN, SUMMARY_BYTES, Summary, SummaryAssembler, bit_index,
    content_keyword,
};
use highway_wire::tokenize::tokens;
use serde::{Deserialize, Serialize};

use super::common::{load, render, unhex};

#[derive(Serialize, Deserialize)]
pub struct File {
    about: String,
    bit_index: Vec<BitIndex>,
    encodings: Vec<Encoding>,
    rejected_payloads: Vec<Rejected>,
    /// One receiver taking these chunks in order.
    assembler: Vec<Step>,
}

#[derive(Serialize, Deserialize)]
struct BitIndex {
    string: String,
    blake3_hex: String,
    bit: u16,
}

#[derive(Serialize, Deserialize)]
struct Encoding {
    about: String,
    /// How many bits are set, and the set bits when there are few.
    set_bits_count: u32,
    set_bits: Option<Vec<u16>>,
    payload_hex: String,
    chunks_hex: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Rejected {
    about: String,
    payload_hex: String,
    error: String,
}

#[derive(Serialize, Deserialize)]
struct Step {
    version: u64,
    chunk: u16,
    chunks: u16,
    data_hex: String,
    /// `incomplete` (kept, waiting for more), `complete`, or `error: ...` (dropped).
    result: String,
}

/// A share whose sparse summary needs several chunks.
fn many_keywords() -> Summary {
    let words: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
    Summary::from_keywords(1, words.iter().map(String::as_str))
}

/// A bitmap dense enough that the dense form is shorter: every third bit.
fn every_third_bit() -> Summary {
    let mut bits = vec![0u8; SUMMARY_BYTES];
    for i in (0..SUMMARY_BYTES * 8).step_by(3) {
        bits[i / 8] |= 1 << (i % 8);
    }
    Summary::from_bits(1, bits).expect("right length")
}

fn set_bits(s: &Summary) -> Vec<u16> {
    (0..=u16::MAX).filter(|&i| s.bit(i)).collect()
}

fn encoding(about: &str, s: &Summary) -> Encoding {
    let bits = set_bits(s);
    Encoding {
        about: about.into(),
        set_bits_count: s.count_ones(),
        set_bits: (bits.len() <= 64).then_some(bits),
        payload_hex: hex::encode(s.encode()),
        chunks_hex: s.chunks().iter().map(|c| hex::encode(&c.2)).collect(),
    }
}

fn documented_sparse() -> Summary {
    let mut bits = vec![0u8; SUMMARY_BYTES];
    for i in [0usize, 1, 200, 65535] {
        bits[i / 8] |= 1 << (i % 8);
    }
    Summary::from_bits(1, bits).expect("right length")
}

fn result(r: Result<Option<Summary>, highway_wire::summary::SummaryError>) -> String {
    match r {
        Ok(None) => "incomplete".into(),
        Ok(Some(_)) => "complete".into(),
        Err(e) => format!("error: {e:?}"),
    }
}

fn assembler_steps() -> Vec<Step> {
    let share = many_keywords().chunks();
    let full = vec![0u8; 1024];
    let mut other = share[0].2.clone();
    other[1] ^= 1;
    let mut steps: Vec<(u64, u16, u16, Vec<u8>)> = vec![
        (0, 0, 1, vec![1]),
        (1, 0, 0, vec![1]),
        (1, 0, 10, full.clone()),
        (1, 2, 2, vec![1]),
        (1, 0, 2, vec![1]),
        (1, 1, 2, vec![]),
        (1, 0, 1, vec![0; 1025]),
        (5, 0, share[0].1, share[0].2.clone()),
        (5, 0, share[0].1, share[0].2.clone()),
        (5, 1, 3, full.clone()),
        (4, 0, 1, vec![1]),
        (5, 0, share[0].1, other),
    ];
    for (i, n, data) in share.iter().skip(1).rev() {
        steps.push((5, *i, *n, data.clone()));
    }
    steps.push((5, 0, share[0].1, share[0].2.clone()));
    steps.push((6, 0, 1, vec![0x07]));
    steps.push((6, 0, 1, vec![0x01, 0x80]));
    steps.push((7, 0, 1, vec![0x01]));
    let mut a = SummaryAssembler::new();
    steps
        .into_iter()
        .map(|(version, chunk, chunks, data)| Step {
            result: result(a.accept(version, chunk, chunks, &data)),
            version,
            chunk,
            chunks,
            data_hex: hex::encode(&data),
        })
        .collect()
}

const REJECTED: &[(&str, &str)] = &[
    ("empty payload", ""),
    ("unknown tag", "02"),
    ("dense body shorter than 8,192 bytes", "000000"),
    ("truncated varint", "0180"),
    ("varint longer than 3 bytes", "0180808001"),
    ("non-minimal varint (0x80 0x00 for 0)", "018000"),
    ("non-minimal varint (0xff 0x80 0x00)", "01ff8000"),
    ("3-byte varint over 65,535 as first index", "01808004"),
    ("index past 65,535 after a gap", "01ffff0300"),
];

fn build() -> File {
    let content = content_keyword(&ContentId::of(b"hello"));
    let bit_index = ["song", "son", "cafe", "東京", content.as_str()]
        .into_iter()
        .map(|s| BitIndex {
            string: s.to_owned(),
            blake3_hex: blake3::hash(s.as_bytes()).to_hex().to_string(),
            bit: bit_index(s),
        })
        .collect();
    // What a share publishes: every token with its prefixes, and each content keyword alone.
    let mut filter = CountingFilter::default();
    for token in tokens("Café del Mar.mp3") {
        filter.add(&token);
    }
    filter.add_exact(&content);
    let share = filter.summary(1);
    File {
        about: "Share summary vectors, docs/PROTOCOL.md \"Share summary encoding\". bit_index: \
                the bit a string sets. encodings: payloads (tag byte and body) and their \
                chunks. rejected_payloads: complete payloads a receiver must refuse. \
                assembler: chunks fed in order to one receiver, with what it must do."
            .into(),
        bit_index,
        encodings: vec![
            encoding("empty summary: sparse, tag only", &Summary::empty(1)),
            encoding("bits 0, 1, 200, 65535: sparse", &documented_sparse()),
            encoding(
                "\"Café del Mar.mp3\" plus the content keyword of BLAKE3(\"hello\")",
                &share,
            ),
            encoding(
                "2,000 keywords t0..t1999 and their prefixes: sparse, several chunks",
                &many_keywords(),
            ),
            encoding(
                "every bit i with i % 3 == 0: dense, 9 chunks",
                &every_third_bit(),
            ),
        ],
        rejected_payloads: REJECTED
            .iter()
            .map(|&(about, payload)| Rejected {
                about: about.into(),
                error: format!(
                    "{:?}",
                    Summary::decode(1, &unhex(payload)).expect_err("refused")
                ),
                payload_hex: payload.into(),
            })
            .collect(),
        assembler: assembler_steps(),
    }
}

pub fn generate() -> String {
    render(&build())
}

#[test]
fn bits_encodings_and_chunks_check_out() {
    let file: File = load("summary.json");
    for b in &file.bit_index {
        let d = unhex(&b.blake3_hex);
        assert_eq!(d, blake3::hash(b.string.as_bytes()).as_bytes());
        assert_eq!(b.bit, u16::from_le_bytes([d[0], d[1]]));
    }
    for e in &file.encodings {
        let payload = unhex(&e.payload_hex);
        assert!(payload.len() <= MAX_ENCODED_LEN);
        let s = Summary::decode(1, &payload).expect("decodes");
        assert_eq!(s.count_ones(), e.set_bits_count, "{}", e.about);
        if let Some(bits) = &e.set_bits {
            assert_eq!(&set_bits(&s), bits, "{}", e.about);
        }
        // The encoder's choice: dense only when sparse would be longer than 8,192 bytes.
        assert_eq!(s.encode(), payload, "{}", e.about);
        // Chunks: 1,024 bytes each but the last, concatenating to the payload.
        let chunks: Vec<Vec<u8>> = e.chunks_hex.iter().map(|c| unhex(c)).collect();
        assert_eq!(chunks.concat(), payload);
        assert_eq!(chunks.len(), payload.len().div_ceil(1024));
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == 1024));
    }
    for r in &file.rejected_payloads {
        assert!(
            Summary::decode(1, &unhex(&r.payload_hex)).is_err(),
            "{}",
            r.about
        );
    }
}

#[test]
fn a_receiver_takes_and_refuses_chunks_as_listed() {
    let file: File = load("summary.json");
    let mut a = SummaryAssembler::new();
    let mut completed = 0;
    for s in &file.assembler {
        let got = result(a.accept(s.version, s.chunk, s.chunks, &unhex(&s.data_hex)));
        assert_eq!(
            got, s.result,
            "version {} chunk {}/{}",
            s.version, s.chunk, s.chunks
        );
        completed += usize::from(got == "complete");
    }
    assert_eq!(completed, 2, "the vectors complete two summaries");
    assert!(
        file.assembler
            .iter()
            .any(|s| s.result.contains("ConflictingChunk")),
        "the multi-chunk summary is assembled over several steps"
    );
}

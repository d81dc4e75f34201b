//! Test vectors: docs/vectors/*.json, for any implementation of the protocol to check itself
//! against (docs/PROTOCOL.md, "Test vectors").
//!
//! Two kinds of test per file: the code must reproduce the file byte for byte (so the files
//! never drift from the implementation), and the file's contents must check out when read
//! the way another implementation would read them (decode the hex, verify the signatures,
//! recompute the keys and tags from the formulas in PROTOCOL.md).
//!
//! After an intended change of the wire format or the tokenizer, regenerate with
//! `cargo test -p highway-wire --test vectors -- --ignored regenerate_vectors`, review the
//! diff, and say in PROTOCOL.md what changed.

mod vectors {
    pub mod common;
    pub mod datagrams;
    pub mod handshake;
    pub mod summary;
    pub mod tokens;
}

use vectors::common::{FILES, path};

#[test]
fn the_code_reproduces_every_vector_file_byte_for_byte() {
    for (name, generate) in FILES {
        let want = generate();
        let have = std::fs::read_to_string(path(name)).unwrap_or_else(|e| {
            panic!(
                "docs/vectors/{name} cannot be read ({e}); regenerate it (see this file's header)"
            )
        });
        assert!(
            have == want,
            "docs/vectors/{name} differs from what the code produces now. If the change is \
             intended, run `cargo test -p highway-wire --test vectors -- --ignored \
             regenerate_vectors`, review the diff and describe it in docs/PROTOCOL.md; \
             otherwise the code broke the wire format"
        );
    }
}

/// Writes docs/vectors/*.json from the code. Run by hand only (see this file's header).
#[test]
#[ignore = "writes docs/vectors; run by hand after an intended format change"]
fn regenerate_vectors() {
    std::fs::create_dir_all(path("")).unwrap();
    for (name, generate) in FILES {
        std::fs::write(path(name), generate()).unwrap();
    }
}

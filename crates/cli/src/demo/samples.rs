//! The demo's shared folders: a few small text files per peer whose names hold distinct
//! keywords, one file every peer holds (many holders, several hops), and one large file
//! only the last peer holds. The content is deterministic, so every run (and every
//! machine) shares the same hashes.

use std::path::Path;

use highway_wire::ContentId;

/// The file only the last peer holds, and the words the demo searches it by.
pub const BIG_FILE: &str = "ocean-sunset-timelapse.bin";
pub const BIG_FILE_QUERY: &str = "ocean sunset";
/// Its size: large enough for a visible transfer, small enough for a few seconds.
pub const BIG_FILE_SIZE: usize = 8 << 20;
/// The file every peer holds, with identical content.
pub const COMMON_FILE: &str = "welcome-to-highway.txt";

/// Keyword names, one per peer (cycled, with a number, past the end of the list).
const TOPICS: &[&str] = &[
    "alpine-hiking-notes",
    "sourdough-bread-recipe",
    "gnutella-protocol-history",
    "jazz-chord-progressions",
    "vintage-bicycle-repair",
    "lunar-eclipse-photos",
    "chess-endgame-studies",
    "urban-beekeeping-guide",
    "kite-surfing-basics",
    "origami-crane-steps",
    "volcano-field-trip",
    "piano-sight-reading",
];

/// One file to share.
#[derive(Debug, Clone)]
pub struct SampleFile {
    pub name: String,
    pub content: Vec<u8>,
}

impl SampleFile {
    pub fn hash(&self) -> ContentId {
        ContentId::of(&self.content)
    }
}

fn text(name: &str, peer: usize, lines: usize) -> Vec<u8> {
    let mut content = String::new();
    for line in 0..lines {
        content.push_str(&format!(
            "{name}, line {line}: shared by demo peer {peer} over Highway.\n"
        ));
    }
    content.into_bytes()
}

/// Pseudo-random, incompressible bytes from BLAKE3's extendable output: the same on
/// every run.
fn big_file_content() -> Vec<u8> {
    let mut content = vec![0u8; BIG_FILE_SIZE];
    blake3::Hasher::new()
        .update(b"highway demo: ocean sunset timelapse")
        .finalize_xof()
        .fill(&mut content);
    content
}

/// The files of peer `peer` (numbered from 1) of `peers`.
pub fn files_for(peer: usize, peers: usize) -> Vec<SampleFile> {
    let topic_index = (peer - 1) % TOPICS.len();
    let topic = if peer <= TOPICS.len() {
        TOPICS[topic_index].to_string()
    } else {
        format!("{}-{peer}", TOPICS[topic_index])
    };
    let mut files = vec![
        SampleFile {
            name: COMMON_FILE.to_string(),
            content: text("Welcome to Highway", 0, 20),
        },
        SampleFile {
            name: format!("{topic}.txt"),
            content: text(&topic, peer, 40 + peer),
        },
    ];
    if peer == peers {
        files.push(SampleFile {
            name: BIG_FILE.to_string(),
            content: big_file_content(),
        });
    }
    files
}

/// Writes `files` into `dir` (created if needed), replacing what is there.
pub fn write(dir: &Path, files: &[SampleFile]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in files {
        std::fs::write(dir.join(&file.name), &file.content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_peer_holds_the_big_file_and_everyone_the_common_one() {
        let peers = 6;
        for peer in 1..=peers {
            let files = files_for(peer, peers);
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            assert!(names.contains(&COMMON_FILE));
            assert_eq!(names.contains(&BIG_FILE), peer == peers, "peer {peer}");
        }
        let common: Vec<ContentId> = (1..=peers).map(|p| files_for(p, peers)[0].hash()).collect();
        assert!(
            common.windows(2).all(|w| w[0] == w[1]),
            "same content everywhere"
        );
    }

    #[test]
    fn names_are_distinct_and_content_is_the_same_on_every_run() {
        let mut names: Vec<String> = (1..=30)
            .flat_map(|p| files_for(p, 30).into_iter().skip(1).map(|f| f.name))
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        let big = files_for(3, 3).pop().unwrap();
        assert_eq!(big.content.len(), BIG_FILE_SIZE);
        assert_eq!(big.hash(), files_for(3, 3).pop().unwrap().hash());
    }
}

//! `highway search`: a keyword (or content hash) search through a running node, printing
//! hits as they arrive.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use highway_node::views::{HitJson, SearchPage, SearchRequest};
use highway_wire::ContentId;

use crate::control_client::{ControlClient, ControlError, MAX_SEARCH_WAIT, NodeArgs};
use crate::hit_groups::{Added, HitGroups};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: NodeArgs,
    /// Print nothing until the end, then one JSON array of hits (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
    /// Hops the query may travel, 1 to 7 [default: the node's, 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=7))]
    ttl: Option<u8>,
    /// When the search ends at the latest, e.g. 3s [default: the node's].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Find who holds exactly this file (its 64-hex BLAKE3 content hash) instead.
    #[arg(long, value_name = "HASH", conflicts_with = "words")]
    hash: Option<ContentId>,
    /// Keywords; a file matches when its name holds every one (case and accents ignored).
    #[arg(value_name = "WORDS", required_unless_present = "hash")]
    words: Vec<String>,
}

/// How long one long-poll waits for news.
const POLL_WAIT: Duration = MAX_SEARCH_WAIT;
/// How long past its own timeout a search may run before the client stops waiting.
const END_GRACE: Duration = Duration::from_secs(15);

/// Why following a search stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(
        "search {id} did not end within {waited:?} although its timeout was {timeout:?}; \
         is the node overloaded? `highway status` shows its state"
    )]
    NeverEnded {
        id: String,
        timeout: Duration,
        waited: Duration,
    },
}

/// A finished search: its last page (times, done) and every hit in arrival order.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub last: SearchPage,
    pub hits: Vec<HitJson>,
}

/// Long-polls search `id` until its end, calling `on_hit(number, hit)` (numbers from 1)
/// for each hit as it arrives. `timeout` is the search's own, when the caller set one.
pub async fn follow(
    client: &ControlClient,
    id: &str,
    timeout: Option<Duration>,
    mut on_hit: impl FnMut(usize, &HitJson),
) -> Result<SearchOutcome, FollowError> {
    let started = Instant::now();
    let mut hits: Vec<HitJson> = Vec::new();
    loop {
        let page = client.search_page(id, hits.len(), POLL_WAIT).await?;
        for hit in &page.hits {
            hits.push(hit.clone());
            on_hit(hits.len(), hit);
        }
        if page.done {
            return Ok(SearchOutcome { last: page, hits });
        }
        if let Some(timeout) = timeout
            && started.elapsed() > timeout + END_GRACE
        {
            return Err(FollowError::NeverEnded {
                id: id.to_string(),
                timeout,
                waited: started.elapsed(),
            });
        }
    }
}

/// A hit handler for [`follow`] that prints each file when its first hit arrives (with
/// the header before the first): one row per file, whatever the number of holders.
pub fn print_files(mut print: impl FnMut(&str)) -> impl FnMut(usize, &HitJson) {
    let mut files = HitGroups::default();
    move |_, hit| {
        if let Added::NewFile(number) = files.add(hit) {
            if number == 1 {
                print(&render::file_header(false));
            }
            if let Some(file) = files.get(number) {
                print(&render::file_line(number, file, false));
            }
        }
    }
}

/// The request for `words` (joined by spaces) or `hash`.
pub fn request(
    words: &[String],
    hash: Option<ContentId>,
    ttl: Option<u8>,
    timeout: Option<Duration>,
) -> SearchRequest {
    SearchRequest {
        query: hash.is_none().then(|| words.join(" ")),
        hash,
        ttl,
        timeout_ms: timeout.map(crate::units::millis),
        max_results: None,
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let request = request(&args.words, args.hash, args.ttl, args.timeout);
    let id = client.start_search(&request).await?;
    let json = args.json;
    let mut out = std::io::stdout().lock();
    // Each file is flushed at once: whoever reads a pipe sees it as it arrives. A closed
    // stdout is noticed by the writes after the search.
    let mut print = print_files(|line| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
    let outcome = follow(&client, &id, args.timeout, |number, hit| {
        if !json {
            print(number, hit);
        }
    })
    .await?;
    drop(print);
    // Hits (or none) from a node with no neighbours say nothing about the network: say
    // why the node is cut off (on stderr, so `--json` output stays an array), even when
    // its own files matched (issue 13).
    let cut_off = client.status().await.ok().and_then(|s| s.cut_off);
    if json {
        let text = serde_json::to_string_pretty(&outcome.hits)?;
        writeln!(out, "{text}").context("cannot write to stdout")?;
    } else {
        writeln!(
            out,
            "{}",
            render::search_summary(&outcome.last, &outcome.hits)
        )
        .context("cannot write to stdout")?;
    }
    if let Some(why) = cut_off {
        eprintln!("not connected: {why}");
    }
    // Scripts tell "nothing found" from success and from an error by the exit status.
    if outcome.hits.is_empty() {
        return Err(crate::ExitStatus(crate::EXIT_NO_HITS).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_one_query_and_a_hash_replaces_them() {
        let words = vec!["ocean".to_string(), "sunset".to_string()];
        let r = request(&words, None, Some(3), Some(Duration::from_millis(2500)));
        assert_eq!(r.query.as_deref(), Some("ocean sunset"));
        assert_eq!((r.hash, r.ttl, r.timeout_ms), (None, Some(3), Some(2500)));
        let hash = ContentId::of(b"x");
        let r = request(&[], Some(hash), None, None);
        assert_eq!((r.query, r.hash), (None, Some(hash)));
    }

    #[test]
    fn the_command_line_needs_words_or_a_hash_and_a_sane_ttl() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |line: &[&str]| Cli::try_parse_from([&["search"], line].concat());
        assert!(
            parse(&["--node", "127.0.0.1:1"]).is_err(),
            "no words, no hash"
        );
        assert!(parse(&["--node", "127.0.0.1:1", "--ttl", "9", "a"]).is_err());
        assert!(parse(&["--node", "127.0.0.1:1", "--hash", "abc"]).is_err());
        let ok = parse(&["--node", "127.0.0.1:1", "--timeout", "3s", "a", "b"]).unwrap();
        assert_eq!(ok.args.words, ["a", "b"]);
        assert_eq!(ok.args.timeout, Some(Duration::from_secs(3)));
        let hash = ContentId::of(b"x").to_string();
        let ok = parse(&["--node", "127.0.0.1:1", "--hash", &hash, "--json"]).unwrap();
        assert!(ok.args.json && ok.args.hash.is_some());
    }
}

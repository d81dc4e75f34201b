//! Query routing: flooding with TTL, duplicate suppression, last-hop filtering by summary,
//! hits along the reverse path, end-of-search, timeouts, caching and budgets.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Fake, Net, drain_transmits, ms, solo};
use highway_core::{Catalog, Config, LocalFile, SearchRequest};
use highway_wire::ContentId;
use highway_wire::peer::{Hit, PeerMsg, QueryTarget};
use highway_wire::summary::{CountingFilter, content_keyword};
use highway_wire::tokenize::{all_tokens_match, tokens};

/// A share as a plain list of names.
#[derive(Debug)]
struct Files(Vec<LocalFile>);

impl Files {
    fn new(names: &[&str]) -> Self {
        Self(
            names
                .iter()
                .map(|n| LocalFile {
                    content: ContentId::of(n.as_bytes()),
                    size: n.len() as u64,
                    name: (*n).to_string(),
                })
                .collect(),
        )
    }
}

impl Catalog for Files {
    fn lookup(&self, target: &QueryTarget, limit: usize) -> Vec<LocalFile> {
        self.0
            .iter()
            .filter(|f| match target {
                QueryTarget::Hash(c) => f.content == *c,
                QueryTarget::Keywords(text) => all_tokens_match(&tokens(text), &tokens(&f.name)),
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Gives node `i` a share of `names`, with its summary.
fn share(net: &mut Net, i: usize, names: &[&str]) {
    share_version(net, i, names, 1000 + i as u64);
}

fn share_version(net: &mut Net, i: usize, names: &[&str], version: u64) {
    let files = Files::new(names);
    let mut filter = CountingFilter::default();
    for f in &files.0 {
        for t in tokens(&f.name) {
            filter.add(&t);
        }
        filter.add_exact(&content_keyword(&f.content));
    }
    let summary = filter.summary(version);
    let server = format!("127.0.0.{}:8000", i + 1).parse().unwrap();
    let peer = net.peer_mut(i);
    peer.set_catalog(Some(Arc::new(files)), Some(server));
    peer.set_summary(Some(&summary));
}

fn with_target(target_degree: usize) -> Config {
    Config {
        target_degree,
        ..Config::test()
    }
}

/// Peers 0 - 1 - ... - (n-1) in a line, linked and past a few heartbeats (so summaries
/// went round).
fn line(n: usize, shares: &[(usize, &[&str])]) -> Net {
    let mut net = Net::new(n, with_target(1));
    net.script(0, &[]);
    for i in 1..n {
        net.script(i, &[&[i - 1]]);
    }
    for &(i, names) in shares {
        share(&mut net, i, names);
    }
    for i in 0..n {
        net.join(i);
    }
    net.advance(ms(1000));
    for i in 1..n {
        assert!(net.linked(i - 1, i), "line link {}-{i}", i - 1);
    }
    net
}

fn words(text: &str, ttl: u8) -> SearchRequest {
    SearchRequest {
        target: QueryTarget::Keywords(text.into()),
        ttl: Some(ttl),
        timeout: Duration::from_secs(10),
        max_results: 100,
    }
}

fn queries_between(net: &Net, from: usize, to: usize) -> usize {
    net.messages(from, to)
        .iter()
        .filter(|(_, m)| matches!(m, PeerMsg::Query { .. }))
        .count()
}

#[test]
fn a_file_five_hops_away_is_found_with_ttl_five_and_not_with_four() {
    let mut net = line(6, &[(5, &["Sunset Boulevard.mkv"])]);
    let id = net.search(0, words("sunset boulevard", 5)).unwrap();
    net.advance(ms(500));
    let (hits, done) = net.search_results(0, id);
    assert_eq!(
        done,
        Some(false),
        "every branch answered before the timeout"
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].name, "Sunset Boulevard.mkv");
    assert_eq!(hits[0].hops, 5);
    assert_eq!(hits[0].holder, net.id(5));
    assert_eq!(hits[0].server, "127.0.0.6:8000".parse().unwrap());
    // The hit came back hop by hop along the reverse path.
    for i in (1..=5).rev() {
        let relayed = net
            .messages(i, i - 1)
            .iter()
            .any(|(_, m)| matches!(m, PeerMsg::QueryHits { hits, .. } if hits.len() == 1));
        assert!(relayed, "{i} relayed the hit to {}", i - 1);
    }

    let id = net.search(0, words("sunset", 4)).unwrap();
    net.advance(ms(500));
    let (hits, done) = net.search_results(0, id);
    assert_eq!(done, Some(false));
    assert!(hits.is_empty(), "TTL 4 stops one hop short");
    assert_eq!(
        net.peer(5).stats().queries_received,
        1,
        "only the first search reached peer 5"
    );
}

#[test]
fn a_query_that_comes_round_a_cycle_is_answered_once() {
    // A ring 0-1-2-3-0: the query reaches 2 along both sides.
    let mut net = Net::new(4, with_target(2));
    net.script(0, &[]);
    net.script(1, &[&[0]]);
    net.script(2, &[&[1]]);
    net.script(3, &[&[2, 0]]);
    share(&mut net, 2, &["ring tone.mp3"]);
    for i in 0..4 {
        net.join(i);
    }
    net.advance(ms(1000));
    assert!(net.linked(0, 3) && net.linked(2, 3) && net.linked(0, 1) && net.linked(1, 2));

    let id = net.search(0, words("ring", 4)).unwrap();
    net.advance(ms(500));
    let (hits, done) = net.search_results(0, id);
    assert_eq!(done, Some(false));
    assert_eq!(hits.len(), 1, "one hit, though two paths lead to it");
    let duplicates: u64 = (0..4).map(|i| net.peer(i).stats().queries_duplicate).sum();
    assert!(
        duplicates >= 1,
        "some peer saw the query twice and dropped it"
    );
    let answered: u64 = (0..4).map(|i| net.peer(i).stats().queries_answered).sum();
    assert_eq!(answered, 1, "peer 2 answered once");
}

#[test]
fn the_last_hop_goes_only_to_neighbours_whose_summary_matches() {
    // A star: 0 in the middle; 1 holds "alpha", 2 holds "beta", 3 shares nothing.
    let mut net = Net::new(4, with_target(3));
    net.script(0, &[&[1, 2, 3]]);
    for i in 1..4 {
        net.script(i, &[]);
    }
    share(&mut net, 1, &["alpha centauri.txt"]);
    share(&mut net, 2, &["beta blocker.txt"]);
    for i in [1, 2, 3, 0] {
        net.join(i);
    }
    net.advance(ms(1000));
    assert_eq!(net.neighbours(0), vec![1, 2, 3]);
    assert!(
        net.peer(0).stats().summaries_completed >= 2,
        "0 has 1's and 2's summaries"
    );

    let id = net.search(0, words("alpha", 1)).unwrap();
    net.advance(ms(300));
    assert_eq!(queries_between(&net, 0, 1), 1);
    assert_eq!(
        queries_between(&net, 0, 2),
        0,
        "2's summary rules alpha out"
    );
    assert_eq!(queries_between(&net, 0, 3), 0, "3 shares nothing");
    let (hits, done) = net.search_results(0, id);
    assert_eq!((hits.len(), done), (1, Some(false)));

    // Before the last hop, everyone gets it.
    net.search(0, words("alpha", 2)).unwrap();
    net.advance(ms(300));
    assert_eq!(queries_between(&net, 0, 2), 1);
    assert_eq!(queries_between(&net, 0, 3), 1);

    // A hash query uses the summary too.
    let content = ContentId::of(b"beta blocker.txt");
    let request = SearchRequest {
        target: QueryTarget::Hash(content),
        ..words("", 1)
    };
    let id = net.search(0, request).unwrap();
    net.advance(ms(300));
    assert_eq!(queries_between(&net, 0, 2), 2);
    assert_eq!(queries_between(&net, 0, 1), 2, "not the hash query");
    let (hits, _) = net.search_results(0, id);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].content, content);
}

#[test]
fn without_the_last_hop_filter_the_last_hop_floods() {
    let config = Config {
        last_hop_filter: false,
        ..with_target(3)
    };
    let mut net = Net::new(4, config);
    net.script(0, &[&[1, 2, 3]]);
    for i in 1..4 {
        net.script(i, &[]);
    }
    share(&mut net, 1, &["alpha centauri.txt"]);
    share(&mut net, 2, &["beta blocker.txt"]);
    for i in [1, 2, 3, 0] {
        net.join(i);
    }
    net.advance(ms(1000));
    assert!(net.peer(0).stats().summaries_completed >= 2);

    let id = net.search(0, words("alpha", 1)).unwrap();
    net.advance(ms(300));
    for i in 1..4 {
        assert_eq!(queries_between(&net, 0, i), 1, "peer {i} gets the query");
    }
    let (hits, done) = net.search_results(0, id);
    assert_eq!((hits.len(), done), (1, Some(false)));
}

#[test]
fn a_changed_summary_is_fetched_and_used() {
    let mut net = line(2, &[(1, &["old.txt"])]);
    net.search(0, words("fresh", 1)).unwrap();
    net.advance(ms(300));
    assert_eq!(queries_between(&net, 0, 1), 0, "nothing fresh yet");
    share_version(&mut net, 1, &["old.txt", "fresh.txt"], 5000);
    net.advance(ms(500));
    let id = net.search(0, words("fresh", 1)).unwrap();
    net.advance(ms(300));
    assert_eq!(queries_between(&net, 0, 1), 1);
    assert_eq!(net.search_results(0, id).0.len(), 1);
}

#[test]
fn a_silent_branch_closes_at_its_deadline_and_the_searcher_at_its_timeout() {
    let config = Config::test();
    let mut net = line(4, &[(1, &["near.txt"]), (3, &["near and far.txt"])]);
    net.kill(3);
    let start = net.now;
    let id = net.search(0, words("near", 3)).unwrap();
    net.advance(ms(50));
    let (hits, done) = net.search_results(0, id);
    assert_eq!(hits.len(), 1, "hits arrive before the search ends");
    assert_eq!(done, None);
    // 2 forwards to the dead 3 and waits one hop timeout; 1 waits two, so 2's "done"
    // reaches 1 in time, and 1's reaches 0: the search completes, not timed out.
    net.advance(config.query_hop_timeout * 2 + ms(50));
    assert_eq!(net.search_results(0, id).1, Some(false));
    assert_eq!(net.peer(2).stats().routes_timed_out, 1);
    let ended = net
        .first_event(0, |r| matches!(r, harness::Rec::SearchDone { .. }))
        .unwrap();
    assert!(ended - start >= config.query_hop_timeout);
    // The open branches got the query again after `query_resend`; 1 and 2, still
    // working on it, ignored the copies instead of closing early.
    assert!(net.peer(2).stats().queries_resent >= 1);
    assert!(net.peer(1).stats().queries_resend_ignored >= 1);
    assert!(net.peer(2).stats().queries_resend_ignored >= 1);

    // A searcher with a shorter timeout than its branches ends on its own.
    net.kill(1);
    let request = SearchRequest {
        timeout: ms(200),
        ..words("near", 3)
    };
    let id = net.search(0, request).unwrap();
    net.advance(ms(250));
    assert_eq!(net.search_results(0, id).1, Some(true));
}

#[test]
fn a_lost_query_is_sent_again_and_the_search_completes() {
    let config = Config::test();
    let mut net = line(3, &[(2, &["faraway.txt"])]);
    net.cut_one_way(1, 2);
    let start = net.now;
    let id = net.search(0, words("faraway", 2)).unwrap();
    net.advance(ms(50));
    net.heal_one_way(1, 2);
    let (hits, done) = net.search_results(0, id);
    assert_eq!((hits.len(), done), (0, None), "1's query to 2 was lost");
    net.advance(config.query_resend + ms(100));
    let (hits, done) = net.search_results(0, id);
    assert_eq!((hits.len(), done), (1, Some(false)));
    assert_eq!(net.peer(1).stats().queries_resent, 1);
    let ended = net
        .first_event(0, |r| matches!(r, harness::Rec::SearchDone { .. }))
        .unwrap();
    assert!(
        ended - start < config.query_hop_timeout,
        "ended by the resend, not by 1's deadline: {:?}",
        ended - start
    );
}

#[test]
fn a_lost_query_done_is_said_again() {
    let config = Config::test();
    let mut net = line(2, &[]);
    net.cut_one_way(1, 0);
    let start = net.now;
    let id = net.search(0, words("nothing here", 2)).unwrap();
    net.advance(ms(50));
    net.heal_one_way(1, 0);
    assert_eq!(net.search_results(0, id).1, None, "1's QueryDone was lost");
    net.advance(config.query_resend + ms(100));
    assert_eq!(net.search_results(0, id).1, Some(false));
    assert_eq!(net.peer(0).stats().queries_resent, 1);
    assert_eq!(net.peer(1).stats().queries_duplicate, 1);
    let ended = net
        .first_event(0, |r| matches!(r, harness::Rec::SearchDone { .. }))
        .unwrap();
    assert!(
        ended - start < config.query_resend * 2,
        "{:?}",
        ended - start
    );

    // Lost again after the first resend: the next one, a `query_resend` later, does it.
    net.cut_one_way(1, 0);
    let id = net.search(0, words("still nothing", 2)).unwrap();
    net.advance(config.query_resend + ms(100));
    net.heal_one_way(1, 0);
    assert_eq!(net.search_results(0, id).1, None);
    net.advance(config.query_resend);
    assert_eq!(net.search_results(0, id).1, Some(false));
    assert_eq!(net.peer(0).stats().queries_resent, 3);
}

#[test]
fn hits_overtaken_by_their_query_done_still_reach_the_searcher() {
    // Found by the simulator: with per-datagram jitter, a last-hop peer's QueryDone can
    // arrive before the hits it sent just before; the route closed at once and dropped
    // them as unroutable, so a single-branch search missed a holder two hops away.
    let mut net = line(3, &[(2, &["faraway.txt"])]);
    let already = net.sent_bytes(2, 1).len();
    net.cut_one_way(2, 1);
    let id = net.search(0, words("faraway", 2)).unwrap();
    net.advance(ms(5));
    net.heal_one_way(2, 1);
    let answer: Vec<(PeerMsg, Vec<u8>)> = net.sent_bytes(2, 1)[already..]
        .iter()
        .filter_map(|b| net.open(1, b).map(|m| (m, b.clone())))
        .filter(|(m, _)| matches!(m, PeerMsg::QueryHits { .. } | PeerMsg::QueryDone { .. }))
        .collect();
    assert!(
        matches!(
            answer.iter().map(|(m, _)| m).collect::<Vec<_>>()[..],
            [PeerMsg::QueryHits { .. }, PeerMsg::QueryDone { .. }]
        ),
        "2 answered with hits, then done: {answer:?}"
    );
    // Delivered the other way round.
    let from = net.peer(2).addr().udp_addr();
    net.inject(1, from, &answer[1].1);
    net.inject(1, from, &answer[0].1);
    net.advance(ms(100));
    let (hits, done) = net.search_results(0, id);
    assert_eq!((hits.len(), done), (1, Some(false)));
    assert_eq!(net.peer(1).stats().hits_unroutable, 0);
}

#[test]
fn a_lost_neighbour_closes_its_branch() {
    let mut net = line(3, &[]);
    net.kill(2);
    let id = net.search(1, words("anything", 3)).unwrap();
    net.advance(ms(50));
    // 1 searched through 0 and 2; 0 answered; 2 is dead, so the search waits...
    assert_eq!(net.search_results(1, id).1, None);
    // ...until the failure detector drops 2.
    net.advance(ms(2000));
    assert_eq!(net.search_results(1, id).1, Some(false));
}

#[test]
fn repeated_queries_are_answered_from_the_cache_until_it_expires() {
    let config = Config::test();
    let mut net = line(4, &[(3, &["popular song.ogg"])]);
    let first = net.search(0, words("popular song", 3)).unwrap();
    net.advance(ms(200));
    assert_eq!(net.search_results(0, first).0.len(), 1);
    assert_eq!(net.peer(3).stats().queries_received, 1);

    let second = net.search(0, words("song popular", 3)).unwrap();
    net.advance(ms(200));
    let (hits, done) = net.search_results(0, second);
    assert_eq!((hits.len(), done), (1, Some(false)));
    assert_eq!(net.peer(1).stats().queries_cache_answered, 1);
    assert_eq!(
        net.peer(3).stats().queries_received,
        1,
        "the holder was not asked again"
    );

    net.advance(config.hit_cache_max_ttl);
    net.search(0, words("popular song", 3)).unwrap();
    net.advance(ms(200));
    assert_eq!(net.peer(3).stats().queries_received, 2, "the cache expired");
}

#[test]
fn results_are_capped_per_query() {
    let names: Vec<String> = (0..30).map(|i| format!("photo {i}.jpg")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut net = line(2, &[(1, &names)]);
    let request = SearchRequest {
        max_results: 10,
        ..words("photo", 2)
    };
    let id = net.search(0, request).unwrap();
    net.advance(ms(200));
    let (hits, done) = net.search_results(0, id);
    assert_eq!(hits.len(), 10);
    assert_eq!(done, Some(false));
    // Peer 1 sent all 30 (its own cap is 200) in messages that fit a datagram.
    let messages = net
        .messages(1, 0)
        .into_iter()
        .filter(|(_, m)| matches!(m, PeerMsg::QueryHits { .. }))
        .count();
    assert!(messages >= 2, "30 hits need more than one datagram");
}

#[test]
fn a_flooding_neighbour_is_rate_limited_and_unsolicited_hits_are_dropped() {
    let config = Config {
        query_burst: 5,
        queries_per_second: 1,
        ..Config::test()
    };
    let t0 = std::time::Instant::now();
    let mut peer = solo(config, 1, t0);
    let mut fake = Fake::link(&mut peer, t0, 9);
    drain_transmits(&mut peer);
    harness::drain_events(&mut peer);
    for n in 0..20u8 {
        let bytes = fake.seal(&PeerMsg::Query {
            id: [n; 16],
            ttl: 1,
            hops: 0,
            target: QueryTarget::Keywords("x files".into()),
        });
        peer.handle_datagram(t0, fake.udp(), &bytes);
    }
    assert_eq!(peer.stats().queries_received, 20);
    assert_eq!(peer.stats().queries_rate_limited, 15);
    let dones = drain_transmits(&mut peer)
        .iter()
        .filter_map(|t| fake.open(&t.bytes))
        .filter(|m| matches!(m, PeerMsg::QueryDone { .. }))
        .count();
    assert_eq!(dones, 20, "every query's branch is closed, limited or not");

    let forged = Hit {
        content: ContentId::of(b"x"),
        size: 1,
        holder: fake.id,
        server: "127.0.0.9:1".parse().unwrap(),
        hops: 1,
        name: "x".into(),
        dialable: true,
        relays: Vec::new(),
    };
    let bytes = fake.seal(&PeerMsg::QueryHits {
        id: [99; 16],
        hits: vec![forged],
    });
    peer.handle_datagram(t0, fake.udp(), &bytes);
    assert_eq!(peer.stats().hits_unroutable, 1);
    assert!(
        peer.poll_event().is_none(),
        "no search event from forged hits"
    );
}

#[test]
fn bad_search_requests_are_refused() {
    let mut net = line(2, &[]);
    assert!(net.search(0, words("  ... ", 4)).is_err(), "no keywords");
    assert!(net.search(0, words("ok", 0)).is_err(), "ttl 0");
    assert!(net.search(0, words("ok", 8)).is_err(), "ttl above 7");
    net.leave(0);
    assert!(net.search(0, words("ok", 2)).is_err(), "left");
}

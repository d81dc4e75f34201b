//! Text forms of the control API's views, shared by the one-shot commands, the shell and
//! the demo. Pure functions from views to lines, so tests can pin the layout.

use highway_node::views::{DownloadView, FilesView, HitJson, SearchPage};

use crate::hit_groups::{FileGroup, HitGroups};
use highway_node::{NeighbourJson, StatusView};

use crate::terminal_text::{safe, safe_path};
use crate::units::{average_rate, human_bytes, human_rate, short_duration};

/// Width of the name column of file rows, in terminal columns (a CJK character takes
/// two): longer names are cut in the middle, so the hashes after them line up.
const NAME_WIDTH: usize = 40;

/// The header above file rows; `sources` adds the column of how many peers hold each.
pub fn file_header(sources: bool) -> String {
    let count = if sources { "sources  " } else { "" };
    format!(
        "{:>3}  {:>10}  {count}{:>4}  {}  hash",
        "#",
        "size",
        "hops",
        pad("name", NAME_WIDTH)
    )
}

/// One file a search found: number (1-based, as `get` takes it), size, [sources], hops to
/// the nearest holder (`here`: only this node has it), its path in the first holder's
/// share, full hash. Rows stream in, so the columns are fixed-width.
pub fn file_line(number: usize, file: &FileGroup, sources: bool) -> String {
    let count = if sources {
        format!("{:>7}  ", file.sources)
    } else {
        String::new()
    };
    let hops = file
        .nearest
        .map_or_else(|| "here".to_string(), |h| h.to_string());
    format!(
        "{number:>3}  {:>10}  {count}{hops:>4}  {}  {}",
        human_bytes(file.size),
        pad(&fit(&safe(&file.name), NAME_WIDTH), NAME_WIDTH),
        file.hash
    )
}

/// `text` cut to `width` terminal columns, keeping its start and its end (where a path
/// has the file name) around a `…`.
pub fn fit(text: &str, width: usize) -> String {
    if console::measure_text_width(text) <= width {
        return text.to_string();
    }
    // A third for the start, the rest for the end, where a path has the file's name.
    let head = console::truncate_str(text, width / 3, "");
    let mut room = width - console::measure_text_width(&head) - 1;
    let mut tail: Vec<char> = Vec::new();
    for c in text.chars().rev() {
        let w = console::measure_text_width(c.encode_utf8(&mut [0; 4]));
        if w > room {
            break;
        }
        room -= w;
        tail.push(c);
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// `text` padded with spaces to `width` terminal columns.
fn pad(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(console::measure_text_width(text));
    format!("{text}{}", " ".repeat(fill))
}

/// The end-of-search line: files, sources and peers (the searching node itself is not
/// one), how long it took, and when the first other peer answered.
pub fn search_summary(page: &SearchPage, hits: &[HitJson]) -> String {
    let files = HitGroups::of(hits);
    if files.is_empty() {
        return format!(
            "no hits (the search ended after {})",
            short_duration(page.elapsed_ms)
        );
    }
    let sources: usize = files.files().iter().map(|f| f.sources).sum();
    let first = hits.iter().filter(|h| h.hops > 0).map(|h| h.at_ms).min();
    let count = plural(files.len(), "file", "files");
    let Some(first) = first else {
        return format!(
            "{count}, only on this node: no other peer answered in {}",
            short_duration(page.elapsed_ms)
        );
    };
    let extra = if sources > files.len() {
        format!(" ({sources} sources)")
    } else {
        String::new()
    };
    // Hits carry whole milliseconds: on a LAN the first often comes within the first.
    let first = match first {
        0 => "<1ms".to_string(),
        ms => short_duration(ms),
    };
    format!(
        "{count}{extra} from {} in {}; first hit after {first}",
        plural(files.peers(), "peer", "peers"),
        short_duration(page.elapsed_ms),
    )
}

/// `1 hit`, `3 hits`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Percent done, once the size is known.
pub fn percent(download: &DownloadView) -> Option<u64> {
    let size = download.size?;
    if size == 0 {
        return Some(100);
    }
    Some(u64::try_from(u128::from(download.done_bytes) * 100 / u128::from(size)).unwrap_or(100))
}

/// `ETA 3.1s`, or nothing when the node cannot guess yet.
fn eta(download: &DownloadView) -> String {
    download
        .eta_ms
        .map(|ms| format!("ETA {}", short_duration(ms)))
        .unwrap_or_else(|| "ETA -".to_string())
}

/// What a download that fetches nothing yet waits for.
pub fn waiting_for(download: &DownloadView) -> String {
    match download.state.as_str() {
        "queued" => "queued: waits for one of the 16 download slots".to_string(),
        "paused" => format!("paused; `resume {}` goes on", download.id),
        _ => format!("looking for peers that hold {}", download.hash.short()),
    }
}

/// Progress of a running download on one line, for logs and pipes.
pub fn download_progress(download: &DownloadView) -> String {
    let head = format!("download {}", download.id);
    match (download.state.as_str(), download.size) {
        ("searching", _) => format!("{head}: looking for peers that hold {}", download.hash),
        ("queued" | "paused", _) => format!("{head}: {}", waiting_for(download)),
        (_, Some(size)) => format!(
            "{head}: {} of {} ({}%), {}, {}",
            human_bytes(download.done_bytes),
            human_bytes(size),
            percent(download).unwrap_or(0),
            human_rate(download.rate_bps),
            eta(download)
        ),
        (state, None) => format!(
            "{head}: {state}, {} so far, {}",
            human_bytes(download.done_bytes),
            human_rate(download.rate_bps)
        ),
    }
}

/// The line for a download that finished and verified.
pub fn download_done(download: &DownloadView) -> String {
    let size = download.size.unwrap_or(download.done_bytes);
    let fetched = size.saturating_sub(download.resumed_bytes);
    let resumed = if download.resumed_bytes > 0 {
        format!(
            ", {} resumed from an earlier attempt",
            human_bytes(download.resumed_bytes)
        )
    } else {
        String::new()
    };
    // The ways in that delivered bytes: `direct`, `pushed via ...`, `relayed via ...`.
    let mut paths: Vec<&str> = download
        .sources
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| s.path.as_str())
        .collect();
    paths.dedup();
    let from = if paths.is_empty() {
        String::new()
    } else {
        format!(", from {}", safe(&paths.join(" + ")))
    };
    format!(
        "download {} done: {} ({} in {}, {}{resumed}{from}); every chunk verified against BLAKE3 {}",
        download.id,
        safe_path(&download.out),
        human_bytes(size),
        short_duration(download.elapsed_ms),
        human_rate(average_rate(fetched, download.elapsed_ms)),
        download.hash
    )
}

/// The line for a download that failed.
pub fn download_failed(download: &DownloadView) -> String {
    let mut line = format!(
        "download {} failed: {}",
        download.id,
        safe(download.error.as_deref().unwrap_or("no reason given"))
    );
    if !download.corrupt_holders.is_empty() {
        let bad: Vec<String> = download
            .corrupt_holders
            .iter()
            .map(ToString::to_string)
            .collect();
        line.push_str(&format!(
            " (peers caught sending bad bytes: {})",
            bad.join(", ")
        ));
    }
    line
}

/// The `downloads` table: id, state, percent, size, rate, ETA and destination.
pub fn downloads_table(downloads: &[DownloadView]) -> String {
    if downloads.is_empty() {
        return "no downloads".to_string();
    }
    let mut out = format!(
        "{:>3}  {:<9}  {:>4}  {:>10}  {:>11}  {:>7}  file\n",
        "id", "state", "done", "size", "rate", "ETA"
    );
    for d in downloads {
        let percent = percent(d).map_or_else(|| "-".to_string(), |p| format!("{p}%"));
        let size = d.size.map_or_else(|| "?".to_string(), human_bytes);
        let rate = match d.state.as_str() {
            "running" => human_rate(d.rate_bps),
            _ => "-".to_string(),
        };
        let eta = match (d.state.as_str(), d.eta_ms) {
            ("running", Some(ms)) => short_duration(ms),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{:>3}  {:<9}  {percent:>4}  {size:>10}  {rate:>11}  {eta:>7}  {}\n",
            d.id,
            d.state,
            safe_path(&d.out)
        ));
        if let Some(error) = &d.error {
            out.push_str(&format!("{:>5}{}\n", "", safe(error)));
        }
    }
    out.pop();
    out
}

/// The share and its index: root, hashing progress, then up to `limit` files.
pub fn files_report(files: &FilesView, limit: usize) -> String {
    let Some(root) = &files.root else {
        return "nothing is shared".to_string();
    };
    let mut out = format!(
        "sharing {}: {} indexed, served from {}\n",
        safe_path(root),
        plural(
            usize::try_from(files.total_files).unwrap_or(usize::MAX),
            "file",
            "files"
        ),
        files.file_server
    );
    if files.scanning {
        out.push_str(&format!(
            "hashing: {} of {} files, {} of {}\n",
            files.files_done,
            files.files_total,
            human_bytes(files.bytes_done),
            human_bytes(files.bytes_total)
        ));
    }
    if !files.files.is_empty() {
        out.push_str(&format!("{:>10}  {:<10}  path\n", "size", "hash"));
    }
    for file in files.files.iter().take(limit) {
        out.push_str(&format!(
            "{:>10}  {:<10}  {}\n",
            human_bytes(file.size),
            file.hash.short(),
            safe(&file.path)
        ));
    }
    let shown = files.files.len().min(limit) as u64;
    if files.total_files > shown {
        out.push_str(&format!(
            "... and {} more (GET /v1/files lists up to 10,000)\n",
            files.total_files - shown
        ));
    }
    for skipped in &files.skipped {
        let path = if skipped.path.is_empty() {
            "(the shared folder)"
        } else {
            &skipped.path
        };
        out.push_str(&format!(
            "skipped: {}: {}\n",
            safe(path),
            safe(&skipped.reason)
        ));
    }
    out.pop();
    out
}

/// `highway status` and the shell's `status`.
pub fn status_report(status: &StatusView) -> String {
    let s = &status.stats;
    [
        format!("id:         {}", status.id),
        format!("udp:        {}", status.addr.udp_addr()),
        format!("tcp:        {}", status.addr.tcp_addr()),
        format!("phase:      {}", status.phase),
        format!(
            "degree:     {} (target {}, max {})",
            status.degree, status.target_degree, status.max_degree
        ),
        format!("gatekeeper: {}", status.gatekeeper),
        format!(
            "heartbeats: {} sent, {} received; suspicions {}, refuted {}, failures {}",
            s.heartbeats_sent, s.heartbeats_received, s.suspicions, s.refuted, s.failures
        ),
        reachability_line(status),
    ]
    .into_iter()
    .chain(
        status
            .cut_off
            .as_ref()
            .map(|why| format!("NOT CONNECTED: {why}")),
    )
    .chain((status.share_skipped > 0).then(|| {
        format!(
            "share:      {} not shared or not watched; `files` lists them with why",
            plural(
                usize::try_from(status.share_skipped).unwrap_or(usize::MAX),
                "path",
                "paths"
            )
        )
    }))
    .collect::<Vec<_>>()
    .join("\n")
}

/// `reachable: nat-per-destination, not dialable (seen as 203.0.113.7; 2 observers)`.
fn reachability_line(status: &StatusView) -> String {
    let r = &status.reachability;
    let mut line = format!(
        "reachable:  {}, {}",
        if r.class.is_empty() {
            "unknown"
        } else {
            &r.class
        },
        if r.dialable {
            "dialable"
        } else {
            "not dialable (links by dialling out)"
        }
    );
    let mut seen: Vec<String> = r.observed.iter().map(|o| o.addr.to_string()).collect();
    seen.sort();
    seen.dedup();
    match (r.observed_ip, seen.is_empty()) {
        (Some(ip), true) => line.push_str(&format!(" (the Gatekeeper sees {ip})")),
        (Some(ip), false) => line.push_str(&format!(
            " (the Gatekeeper sees {ip}; neighbours see {})",
            seen.join(", ")
        )),
        (None, false) => line.push_str(&format!(" (neighbours see {})", seen.join(", "))),
        (None, true) => {}
    }
    line
}

/// `highway neighbors` and the shell's `neighbors`: one line per neighbour, then a count.
pub fn neighbors_table(list: &[NeighbourJson]) -> String {
    let mut out = format!(
        "{:<12}  {:<32}  {:<7}  {:>10}  {:>10}  {:<7}  path\n",
        "peer", "address", "state", "last heard", "linked for", "inbound"
    );
    for n in list {
        let addr = format!("{} udp {} tcp {}", n.addr.ip, n.addr.udp, n.addr.tcp);
        let mut path = if n.path.is_empty() {
            "direct".to_string()
        } else {
            n.path.clone()
        };
        // Behind a NAT the datagrams come from the mapping, not the published address (a
        // TCP-carried link's address is its connection's, not a mapping: not shown).
        if let Some(udp) = n
            .udp_path
            .filter(|p| *p != n.addr.udp_addr() && path == "direct")
        {
            path.push_str(&format!(" (NAT mapping {udp})"));
        }
        out.push_str(&format!(
            "{:<12}  {:<32}  {:<7}  {:>10}  {:>10}  {:<7}  {}\n",
            n.short_id,
            addr,
            n.state,
            format!("{} ago", short_duration(n.last_heard_ms_ago)),
            short_duration(n.linked_for_ms),
            if n.inbound { "yes" } else { "no" },
            path,
        ));
    }
    out.push_str(&plural(list.len(), "neighbour", "neighbours"));
    out
}

#[cfg(test)]
pub mod fixtures {
    //! Views with plausible values, for rendering tests here and in the shell.

    use std::path::PathBuf;

    use highway_node::views::{DownloadView, HitJson};
    use highway_wire::{ContentId, NodeId};

    /// A valid NodeId (an ed25519 public key) derived from `seed`.
    pub fn node_id(seed: u8) -> NodeId {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        NodeId::from_key(&key.verifying_key())
    }

    pub fn hit(name: &str, size: u64, hops: u8, holder: u8) -> HitJson {
        HitJson {
            name: name.to_string(),
            size,
            hash: ContentId::of(name.as_bytes()),
            holder: node_id(holder),
            addr: format!("127.0.0.{}:4000", holder).parse().unwrap(),
            hops,
            at_ms: 40 * u64::from(hops),
            dialable: true,
            relays: Vec::new(),
        }
    }

    pub fn download(id: u64, state: &str, size: Option<u64>, done: u64) -> DownloadView {
        DownloadView {
            id,
            hash: ContentId::of(b"file"),
            out: PathBuf::from("/tmp/out/file.bin"),
            state: state.to_string(),
            size,
            done_bytes: done,
            resumed_bytes: 0,
            rate_bps: if state == "running" { 2 << 20 } else { 0 },
            eta_ms: (state == "running").then_some(1500),
            holders: vec!["127.0.0.3:4000".parse().unwrap()],
            corrupt_holders: Vec::new(),
            faults: Vec::new(),
            error: (state == "failed").then(|| "no peer holds it any more".to_string()),
            elapsed_ms: 2000,
            sources: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{download, hit};
    use super::*;

    #[test]
    fn file_rows_align_under_the_header_with_wide_and_long_names() {
        for sources in [false, true] {
            let header = file_header(sources);
            for name in [
                "ocean-sunset.bin",
                "音楽/夜明けの海.flac",
                "a very long folder name that goes on/and on/ocean-sunset-timelapse.bin",
            ] {
                let groups = HitGroups::of(&[hit(name, 8 << 20, 3, 7)]);
                let file = groups.get(1).unwrap();
                let line = file_line(12, file, sources);
                assert!(line.starts_with(" 12     8.0 MiB  "), "{line}");
                let column = |text: &str, word: &str| {
                    console::measure_text_width(&text[..text.find(word).unwrap()])
                };
                assert_eq!(
                    column(&header, "hash"),
                    column(&line, &file.hash.to_string())
                );
                assert!(line.ends_with(&file.hash.to_string()), "{line}");
                assert!(line.contains(".bin") || line.contains(".flac"), "{line}");
            }
        }
        let row = file_line(1, HitGroups::of(&[hit("x", 1, 2, 3)]).get(1).unwrap(), true);
        assert!(row.contains("      1     2  x"), "{row}");
        let mine = HitGroups::of(&[hit("x", 1, 0, 3)]);
        assert!(file_line(1, mine.get(1).unwrap(), false).contains("here"));
    }

    #[test]
    fn long_names_keep_their_start_and_end() {
        let cut = fit("music/2019/live at the hall/encore.flac", 20);
        assert_eq!(console::measure_text_width(&cut), 20);
        assert!(
            cut.starts_with("music/") && cut.ends_with("/encore.flac"),
            "{cut}"
        );
        let wide = fit(&"海".repeat(30), 21);
        assert!(console::measure_text_width(&wide) <= 21, "{wide}");
        assert_eq!(fit("short", 20), "short");
    }

    #[test]
    fn summaries_count_files_sources_and_peers_and_say_no_hits_plainly() {
        let page = SearchPage {
            search: "ab".repeat(16),
            query: "ocean".to_string(),
            done: true,
            hits: Vec::new(),
            next: 0,
            elapsed_ms: 2000,
            first_hit_ms: None,
        };
        assert_eq!(
            search_summary(&page, &[]),
            "no hits (the search ended after 2.0s)"
        );
        let mut again = hit("a", 1, 2, 3);
        again.hash = hit("a", 1, 1, 2).hash;
        let hits = [
            hit("a", 1, 1, 2),
            hit("b", 1, 2, 2),
            again,
            hit("a", 1, 0, 9),
        ];
        let page = SearchPage {
            first_hit_ms: Some(0),
            ..page
        };
        assert_eq!(
            search_summary(&page, &hits),
            "2 files (3 sources) from 2 peers in 2.0s; first hit after 40ms"
        );
        assert_eq!(
            search_summary(&page, &[hit("mine", 1, 0, 9)]),
            "1 file, only on this node: no other peer answered in 2.0s"
        );
    }

    #[test]
    fn progress_lines_show_percent_rate_and_eta() {
        let d = download(3, "running", Some(8 << 20), 2 << 20);
        assert_eq!(percent(&d), Some(25));
        assert_eq!(
            download_progress(&d),
            "download 3: 2.0 MiB of 8.0 MiB (25%), 2.0 MiB/s, ETA 1.5s"
        );
        let searching = download(4, "searching", None, 0);
        assert!(download_progress(&searching).contains("looking for peers"));
        let empty = download(5, "done", Some(0), 0);
        assert_eq!(percent(&empty), Some(100));
    }

    #[test]
    fn finished_and_failed_downloads_say_what_happened() {
        let done = download(1, "done", Some(8 << 20), 8 << 20);
        let line = download_done(&done);
        assert!(
            line.starts_with("download 1 done: /tmp/out/file.bin (8.0 MiB in 2.0s, 4.0 MiB/s)"),
            "{line}"
        );
        assert!(line.contains("verified against BLAKE3"), "{line}");
        let failed = download(2, "failed", Some(10), 0);
        assert_eq!(
            download_failed(&failed),
            "download 2 failed: no peer holds it any more"
        );
    }

    #[test]
    fn the_downloads_table_has_one_row_per_download_and_the_error_below() {
        let table = downloads_table(&[
            download(1, "running", Some(8 << 20), 4 << 20),
            download(2, "failed", None, 0),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with(" id  state"), "{table}");
        assert!(lines[1].contains("running     50%"), "{table}");
        assert!(lines[1].contains("2.0 MiB/s"), "{table}");
        assert!(lines[2].contains("failed"), "{table}");
        assert!(
            lines[3].trim_start().starts_with("no peer holds it"),
            "{table}"
        );
        assert_eq!(downloads_table(&[]), "no downloads");
    }

    #[test]
    fn a_download_names_the_path_that_delivered_it() {
        let mut done = download(3, "done", Some(1 << 20), 1 << 20);
        done.sources = vec![
            highway_node::views::SourceJson {
                url: "http://203.0.113.9:7001/v1/relay/x".into(),
                path: "relayed via 5e2dee7edb".into(),
                bytes: 1 << 20,
            },
            highway_node::views::SourceJson {
                url: "http://198.51.100.2:80".into(),
                path: "direct".into(),
                bytes: 0,
            },
        ];
        let line = download_done(&done);
        assert!(line.contains(", from relayed via 5e2dee7edb)"), "{line}");
        assert!(
            !line.contains("direct"),
            "a source that delivered nothing: {line}"
        );
    }

    #[test]
    fn status_says_how_reachable_the_node_is_and_why_it_is_cut_off() {
        let mut status: StatusView = serde_json::from_value(serde_json::json!({
            "id": fixtures::node_id(1), "short_id": "x",
            "addr": {"ip": "192.0.2.10", "udp": 4000, "tcp": 4001},
            "phase": "running", "degree": 0, "target_degree": 3, "max_degree": 5,
            "gatekeeper": "http://203.0.113.2:7700", "stats": {}
        }))
        .unwrap();
        status.reachability.class = "nat-per-destination".into();
        status.reachability.observed_ip = Some("203.0.113.23".parse().unwrap());
        status.cut_off = Some("0 neighbours: the Gatekeeper offered no peer to dial yet".into());
        let text = status_report(&status);
        assert!(
            text.contains(
                "reachable:  nat-per-destination, not dialable (links by dialling out) \
                 (the Gatekeeper sees 203.0.113.23)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "NOT CONNECTED: 0 neighbours: the Gatekeeper offered no peer to dial yet"
            ),
            "{text}"
        );
        status.cut_off = None;
        assert!(!status_report(&status).contains("NOT CONNECTED"));
    }
}

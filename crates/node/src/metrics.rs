//! `GET /metrics` on the control API: the node's counters and gauges in the Prometheus
//! text format (0.0.4), for a Prometheus (or agent) on the same machine or pod — the
//! control API listens on loopback only.
//!
//! Rendered from the same state `GET /v1/status` and `GET /v1/neighbors` show, so the two
//! never disagree:
//!
//! - every counter of `highway_core::Stats` as `highway_node_<name>_total` and every
//!   counter of [`RuntimeStats`] as `highway_node_runtime_<name>_total`. They are read
//!   from the structs' serde JSON, so a counter added to either struct (queries, hits,
//!   bytes fetched, ...) appears here without touching this file. Both structs hold
//!   only counters, which only grow (docs/PROTOCOL.md). The word `summary` becomes
//!   `summaries` (`highway_node_summaries_chunks_sent_total`), since promtool refuses a
//!   metric type's name inside a metric name; each HELP line says what the counter
//!   counts (`metric_help.rs`) and names the original field;
//! - `highway_node_detector_transitions_total{from, to}`: the failure detector's moves,
//!   okay → warning (suspected), warning → okay (refuted), warning → failed;
//! - `highway_node_neighbours{state}`: current neighbours per detector state (`okay` and
//!   `warning` always present), plus `highway_node_degree`, `_target_degree`,
//!   `_max_degree`;
//! - `highway_node_phase{phase}`: 1 for the current phase, 0 for the others;
//! - `highway_node_info{id, version}`: always 1.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::control::{ControlState, NeighbourJson, RuntimeStats, StatusView, status_view, stopped};

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Phases a node goes through, as `/v1/status` names them.
const PHASES: [&str; 3] = ["idle", "running", "left"];
/// Neighbour states always reported, even when no neighbour is in them.
const STATES: [&str; 2] = ["okay", "warning"];

/// The handler of `GET /metrics`.
pub(crate) async fn serve(State(state): State<ControlState>) -> Response {
    let Some(snap) = state.snapshot().await else {
        return stopped();
    };
    let runtime = RuntimeStats::new(state.counters.as_ref(), &snap.stats);
    let status = status_view(&snap, &state.gatekeeper, runtime, &state.counters);
    let neighbours: Vec<NeighbourJson> = snap.neighbours.iter().map(NeighbourJson::from).collect();
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&status, &neighbours),
    )
        .into_response()
}

/// The metrics of a node whose status is `status` and whose neighbours are `neighbours`.
pub fn render(status: &StatusView, neighbours: &[NeighbourJson]) -> String {
    let mut out = Text::default();
    out.family(
        "highway_node_info",
        "gauge",
        "Always 1; the labels name this node and its version",
    );
    out.sample(
        "highway_node_info",
        &[
            ("id", status.id.to_string().as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    out.family(
        "highway_node_phase",
        "gauge",
        "1 for the node's current phase (idle: not joined yet, running, left)",
    );
    for phase in PHASES {
        let on = u64::from(status.phase == phase);
        out.sample("highway_node_phase", &[("phase", phase)], on);
    }
    if !PHASES.contains(&status.phase.as_str()) {
        out.sample("highway_node_phase", &[("phase", status.phase.as_str())], 1);
    }

    for (name, help, value) in [
        ("degree", "Current neighbours", status.degree),
        (
            "target_degree",
            "Neighbours the node looks for",
            status.target_degree,
        ),
        (
            "max_degree",
            "Most neighbours the node accepts",
            status.max_degree,
        ),
    ] {
        let metric = format!("highway_node_{name}");
        out.family(&metric, "gauge", help);
        out.sample(&metric, &[], value as u64);
    }

    // Reachability (issue 11): whether others can dial the node, and its NAT class as
    // its neighbours observe it (one series at 1, like the phase).
    out.family(
        "highway_node_dialable",
        "gauge",
        "1 when the Gatekeeper offers this node to others as dialable, 0 behind a NAT",
    );
    out.sample(
        "highway_node_dialable",
        &[],
        u64::from(status.reachability.dialable),
    );
    out.family(
        "highway_node_reachability",
        "gauge",
        "What is in front of the node's UDP socket, as its neighbours observe it",
    );
    let class = if status.reachability.class.is_empty() {
        "unknown"
    } else {
        status.reachability.class.as_str()
    };
    out.sample("highway_node_reachability", &[("class", class)], 1);

    let mut per_state: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
    for n in neighbours {
        *per_state.entry(n.state.as_str()).or_default() += 1;
    }
    out.family(
        "highway_node_neighbours",
        "gauge",
        "Current neighbours by failure-detector state",
    );
    for (state, count) in per_state {
        out.sample("highway_node_neighbours", &[("state", state)], count);
    }

    let stats = &status.stats;
    out.family(
        "highway_node_detector_transitions_total",
        "counter",
        "Failure detector state changes of neighbours",
    );
    for (from, to, count) in [
        ("okay", "warning", stats.suspicions),
        ("warning", "okay", stats.refuted),
        ("warning", "failed", stats.failures),
    ] {
        out.sample(
            "highway_node_detector_transitions_total",
            &[("from", from), ("to", to)],
            count,
        );
    }

    let core = serde_json::to_value(&status.stats).unwrap_or_default();
    out.counters("highway_node_", crate::metric_help::core, &core);
    let runtime = serde_json::to_value(&status.runtime).unwrap_or_default();
    out.counters(
        "highway_node_runtime_",
        crate::metric_help::runtime,
        &runtime,
    );
    out.0
}

/// Prometheus text being written. Writing into a `String` cannot fail, so results of
/// `write!` are ignored.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape_label(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One counter per numeric field of `object` (nested objects flattened with `_`),
    /// named `prefix` + field + `_total`, described by `help` (and the field's name, so
    /// the JSON field is easy to find).
    fn counters(
        &mut self,
        prefix: &str,
        help: fn(&str) -> Option<&'static str>,
        object: &serde_json::Value,
    ) {
        let mut fields = Vec::new();
        flatten("", object, &mut fields);
        for (field, value) in fields {
            let name = format!("{prefix}{}_total", metric_name(&field));
            let text = help(&field).unwrap_or("A counter");
            self.family(&name, "counter", &format!("{text} (field {field})"));
            self.sample(&name, &[], value);
        }
    }
}

/// The non-negative integer leaves of `value`, named by their path joined with `_`.
fn flatten(path: &str, value: &serde_json::Value, into: &mut Vec<(String, u64)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}_{key}")
                };
                flatten(&path, inner, into);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(v) = n.as_u64() {
                into.push((path.to_string(), v));
            }
        }
        _ => {}
    }
}

/// `field` as a valid metric name part: ASCII letters, digits and `_` only, and no word
/// that names a metric type (promtool refuses `..._summary_...`), so such a word is
/// pluralised: `summary_chunks_sent` becomes `summaries_chunks_sent`.
fn metric_name(field: &str) -> String {
    let clean: String = field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    clean
        .split('_')
        .map(|word| match word {
            "summary" => "summaries",
            "counter" => "counters",
            "gauge" => "gauges",
            "histogram" => "histograms",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use highway_wire::{NodeId, PeerAddr};

    fn id(seed: u8) -> NodeId {
        NodeId::from_key(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    fn status() -> StatusView {
        let id = id(7);
        let stats = highway_core::Stats {
            heartbeats_sent: 12,
            heartbeats_received: 11,
            suspicions: 3,
            refuted: 2,
            failures: 1,
            ..Default::default()
        };
        StatusView {
            id,
            short_id: id.short(),
            addr: PeerAddr::new([127, 0, 0, 2].into(), 4000, 4001),
            phase: "running".into(),
            degree: 2,
            target_degree: 3,
            max_degree: 5,
            undialable_slots: 8,
            gatekeeper: "http://127.0.0.1:7700".into(),
            stats,
            runtime: RuntimeStats {
                gatekeeper_errors: 4,
                ..RuntimeStats::default()
            },
            reachability: Default::default(),
            cut_off: None,
            share_skipped: 0,
        }
    }

    fn neighbour(state: &str) -> NeighbourJson {
        NeighbourJson {
            id: id(1),
            short_id: String::new(),
            addr: PeerAddr::new([127, 0, 0, 3].into(), 4000, 4001),
            state: state.into(),
            inbound: false,
            linked_for_ms: 0,
            last_heard_ms_ago: 0,
            sent_seq: 0,
            last_acked_seq: 0,
            incarnation: 0,
            summary_version: 0,
            their_neighbours: vec![],
            path: "direct".into(),
            udp_path: None,
            dialable: true,
            observed_me: None,
        }
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn every_counter_of_both_structs_is_exported() {
        let status = status();
        let text = render(&status, &[]);
        let core = serde_json::to_value(&status.stats).unwrap();
        for (field, value) in core.as_object().unwrap() {
            let line = format!("highway_node_{}_total {value}", metric_name(field));
            assert!(has(&text, &line), "{line:?} missing:\n{text}");
        }
        let runtime = serde_json::to_value(&status.runtime).unwrap();
        for (field, value) in runtime.as_object().unwrap() {
            let line = format!("highway_node_runtime_{}_total {value}", metric_name(field));
            assert!(has(&text, &line), "{line:?} missing:\n{text}");
        }
        assert!(has(&text, "highway_node_heartbeats_sent_total 12"));
        assert!(has(&text, "highway_node_runtime_gatekeeper_errors_total 4"));
    }

    #[test]
    fn neighbours_phase_and_transitions() {
        let text = render(
            &status(),
            &[neighbour("okay"), neighbour("warning"), neighbour("okay")],
        );
        for line in [
            "highway_node_neighbours{state=\"okay\"} 2",
            "highway_node_neighbours{state=\"warning\"} 1",
            "highway_node_phase{phase=\"running\"} 1",
            "highway_node_phase{phase=\"idle\"} 0",
            "highway_node_degree 2",
            "highway_node_detector_transitions_total{from=\"okay\",to=\"warning\"} 3",
            "highway_node_detector_transitions_total{from=\"warning\",to=\"okay\"} 2",
            "highway_node_detector_transitions_total{from=\"warning\",to=\"failed\"} 1",
            "# TYPE highway_node_neighbours gauge",
        ] {
            assert!(has(&text, line), "{line:?} missing:\n{text}");
        }
        // No neighbours still reports both states, at zero.
        let text = render(&status(), &[]);
        assert!(has(&text, "highway_node_neighbours{state=\"warning\"} 0"));
    }

    #[test]
    fn nested_and_odd_fields_become_valid_names() {
        let mut fields = Vec::new();
        let value = serde_json::json!({"a": {"b-c": 2, "text": "x", "neg": -1}, "d": 1});
        flatten("", &value, &mut fields);
        fields.sort();
        assert_eq!(fields, vec![("a_b-c".into(), 2), ("d".into(), 1)]);
        assert_eq!(metric_name("a_b-c"), "a_b_c");
        assert_eq!(metric_name("summary_chunks_sent"), "summaries_chunks_sent");
        assert_eq!(metric_name("gauge"), "gauges");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

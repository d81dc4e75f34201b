//! Prometheus metrics of one Gatekeeper process, at `GET /metrics`: the Prometheus text
//! format (0.0.4) by default, OpenMetrics when the scraper asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does). Both pass `promtool check metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use highway_serve::ServeCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The endpoints we label by; anything else is `other`, so a scanner cannot blow up the
/// number of series.
pub fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/join" => "join",
        "/v1/status" => "status",
        "/v1/report" => "report",
        "/v1/leave" => "leave",
        "/v1/peers" => "peers",
        "/healthz" => "healthz",
        "/livez" => "livez",
        "/metrics" => "metrics",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub store: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    build: Family<BuildLabels, Gauge>,
    pub in_flight: Gauge,
    pub live_peers: Gauge,
    pub purged: Counter,
    pub store_up: Gauge,
    /// The HTTP server's connection counters, rendered on each scrape.
    pub connections: Arc<ServeCounters>,
}

/// Renders [`ServeCounters`] as `highway_gatekeeper_connections_*` on each scrape.
#[derive(Debug)]
struct ConnectionCollector(Arc<ServeCounters>);

impl Collector for ConnectionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let counters = [
            ("connections_accepted", "Connections admitted", &c.accepted),
            (
                "connections_refused_per_source",
                "Connections closed at once (503) because their IPv4 address or IPv6 /64 held its share",
                &c.refused_per_source,
            ),
            (
                "connections_refused_total_cap",
                "Connections closed at once (503) because the process held its total",
                &c.refused_total_cap,
            ),
            (
                "connections_header_timeouts",
                "Connections closed because request headers did not arrive in time",
                &c.header_timeouts,
            ),
            (
                "connections_tls_failures",
                "TLS handshakes that failed (untrusted certificate, or not TLS at all)",
                &c.tls_failures,
            ),
            (
                "connections_idle_timeouts",
                "Connections closed because nothing moved while a request was answered",
                &c.idle_timeouts,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let open =
            ConstGauge::new(i64::try_from(c.open.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "connections_open",
            "Connections open now",
            None,
            open.metric_type(),
        )?;
        open.encode(metric)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("highway_gatekeeper");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        let rejections = Family::<ReasonLabels, Counter>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        let in_flight = Gauge::default();
        let live_peers = Gauge::default();
        let purged = Counter::default();
        let store_up = Gauge::default();
        let connections = Arc::new(ServeCounters::default());
        registry.register_collector(Box::new(ConnectionCollector(Arc::clone(&connections))));
        registry.register(
            "requests",
            "HTTP requests by endpoint and status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by endpoint",
            latency.clone(),
        );
        registry.register(
            "rejections",
            "Refused requests by reason",
            rejections.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being answered now (over 4096, new ones get 503 overloaded)",
            in_flight.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; labels say this process's version and store kind",
            build.clone(),
        );
        registry.register(
            "live_peers",
            "Registered peers whose deadline has not passed",
            live_peers.clone(),
        );
        registry.register(
            "purged",
            "Entries removed after missing their status deadline",
            purged.clone(),
        );
        registry.register(
            "store_up",
            "1 when the store answered the last health check",
            store_up.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            rejections,
            build,
            in_flight,
            live_peers,
            purged,
            store_up,
            connections,
        }
    }
}

impl Metrics {
    pub fn observe(&self, endpoint: &'static str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, code })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Sets `highway_gatekeeper_build_info{version, store}` to 1.
    pub fn set_build_info(&self, store: &'static str) {
        let version = env!("CARGO_PKG_VERSION");
        self.build
            .get_or_create(&BuildLabels { version, store })
            .set(1);
    }

    /// OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Prometheus text format (`text/plain; version=0.0.4`).
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// Rewrites OpenMetrics text as the older Prometheus text format, which `promtool check
/// metrics` and plain-text scrapers read. The two differ, for what prometheus-client
/// writes, only in that an OpenMetrics counter family `x` has samples `x_total` while the
/// Prometheus format names the family `x_total` too, and that OpenMetrics ends with
/// `# EOF` and may carry `# UNIT` lines.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_after_their_total_samples() {
        let om = "# HELP hw_requests Requests.\n# TYPE hw_requests counter\n\
                  hw_requests_total{code=\"200\"} 3\n# HELP hw_up Up.\n# TYPE hw_up gauge\n\
                  hw_up 1\n# UNIT hw_up seconds\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP hw_requests_total Requests.\n# TYPE hw_requests_total counter\n\
             hw_requests_total{code=\"200\"} 3\n# HELP hw_up Up.\n# TYPE hw_up gauge\nhw_up 1\n"
        );
    }

    #[test]
    fn both_formats_carry_every_family() {
        let metrics = Metrics::default();
        metrics.observe("join", 200, Duration::from_millis(3));
        metrics.reject("bad_signature");
        metrics.set_build_info("embedded");
        metrics
            .connections
            .refused_per_source
            .fetch_add(2, Ordering::Relaxed);
        let text = metrics.encode_prometheus();
        for line in [
            "# TYPE highway_gatekeeper_requests_total counter",
            "highway_gatekeeper_requests_total{endpoint=\"join\",code=\"200\"} 1",
            "# TYPE highway_gatekeeper_request_duration_seconds histogram",
            "# TYPE highway_gatekeeper_rejections_total counter",
            "# TYPE highway_gatekeeper_purged_total counter",
            "# TYPE highway_gatekeeper_requests_in_flight gauge",
            "# TYPE highway_gatekeeper_live_peers gauge",
            "# TYPE highway_gatekeeper_connections_refused_per_source_total counter",
            "highway_gatekeeper_connections_refused_per_source_total 2",
            "# TYPE highway_gatekeeper_connections_header_timeouts_total counter",
            "highway_gatekeeper_connections_open 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}

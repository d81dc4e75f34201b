//! Prometheus metrics of one Gatekeeper process (text format at `GET /metrics`).

use std::time::Duration;

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
        "/metrics" => "metrics",
        _ => "other",
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    pub live_peers: Gauge,
    pub purged: Counter,
    pub store_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("highway_gatekeeper");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        let rejections = Family::<ReasonLabels, Counter>::default();
        let live_peers = Gauge::default();
        let purged = Counter::default();
        let store_up = Gauge::default();
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
            live_peers,
            purged,
            store_up,
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

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

//! Figures of one benchmark run, as a table for people and as JSON for scripts.

use serde::Serialize;
use std::fmt::Write as _;

use super::cpu::Usage;
use super::load::Outcome;

/// Share of the CPU (percent) other processes may use before a phase is flagged.
const DISTURBED_PCT: f64 = 5.0;

/// Latency percentiles of the successful requests, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `ns` (sorted in place).
    pub fn of(ns: &mut [u64]) -> Self {
        if ns.is_empty() {
            return Self::default();
        }
        ns.sort_unstable();
        let at = |p: f64| {
            let rank = (p * ns.len() as f64).ceil() as usize;
            ns[rank.clamp(1, ns.len()) - 1] as f64 / 1e6
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: ns[ns.len() - 1] as f64 / 1e6,
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub concurrency: usize,
    pub ok: usize,
    pub errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Successful requests per second.
    pub per_second: f64,
    pub latency_ms: Percentiles,
    pub cpu: Usage,
}

impl Phase {
    /// Summarises a finished phase (sorting its latencies).
    pub fn from_outcome<T>(
        name: &str,
        concurrency: usize,
        out: &mut Outcome<T>,
        cpu: Usage,
    ) -> Self {
        let seconds = out.elapsed.as_secs_f64();
        let ok = out.latencies_ns.len();
        Self {
            name: name.to_string(),
            concurrency,
            ok,
            errors: out.errors,
            first_error: out.first_error.clone(),
            seconds,
            per_second: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Percentiles::of(&mut out.latencies_ns),
            cpu,
        }
    }

    /// Server-side CPU per request: Gatekeeper plus Redis, when known.
    pub fn server_us_per_op(&self) -> Option<f64> {
        let gk = self.cpu.gatekeeper_us_per_op?;
        Some(gk + self.cpu.redis_us_per_op.unwrap_or(0.0))
    }
}

/// Lease-token status against signed status.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseVsSigned {
    /// Lease statuses/s divided by signed statuses/s.
    pub throughput_ratio: f64,
    /// Server CPU per signed status divided by server CPU per lease status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ratio: Option<f64>,
    /// What the peer spends to sign one status (encoding included), microseconds; not
    /// part of the signed-status figures, which send pre-signed requests.
    pub client_sign_us: f64,
}

/// Everything one run measured, with what is needed to reproduce it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub cores: usize,
    pub gatekeeper: String,
    pub store: String,
    /// Whether the bench started the Gatekeeper itself (false with --target).
    pub started_by_bench: bool,
    pub peers: usize,
    pub concurrency: usize,
    pub phases: Vec<Phase>,
    pub lease_vs_signed: Option<LeaseVsSigned>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}%"))
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Gatekeeper benchmark: {} store, {} peers registered",
            self.store, self.peers
        );
        let _ = writeln!(s, "  command:  {}", self.command);
        let _ = writeln!(s, "  date:     {}", self.date);
        let sharing = if self.store == "redis" {
            "the load generator, the Gatekeeper and Redis"
        } else {
            "the load generator and the Gatekeeper"
        };
        let _ = writeln!(
            s,
            "  machine:  {} cores, shared by {sharing} (loopback HTTP)",
            self.cores
        );
        let _ = writeln!(
            s,
            "  server:   {} ({})",
            self.gatekeeper,
            if self.started_by_bench {
                "child process started by the bench"
            } else {
                "--target"
            }
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<28} {:>4} {:>8} {:>6} {:>10} {:>7} {:>7} {:>7} {:>7}   {:>6} {:>6} {:>6} {:>5} {:>5}",
            "phase",
            "conc",
            "ok",
            "errors",
            "per sec",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "gk µs",
            "rd µs",
            "gen µs",
            "busy",
            "other"
        );
        for p in &self.phases {
            let _ = writeln!(
                s,
                "{:<28} {:>4} {:>8} {:>6} {:>10.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2}   {:>6} {:>6} {:>6} {:>5} {:>5}",
                p.name,
                p.concurrency,
                p.ok,
                p.errors,
                p.per_second,
                p.latency_ms.p50,
                p.latency_ms.p90,
                p.latency_ms.p99,
                p.latency_ms.max,
                opt(p.cpu.gatekeeper_us_per_op, 1),
                opt(p.cpu.redis_us_per_op, 1),
                opt(p.cpu.loadgen_us_per_op, 1),
                pct(p.cpu.machine_busy_pct),
                pct(p.cpu.other_pct),
            );
        }
        let _ = writeln!(
            s,
            "  (gk/rd/gen µs: CPU per successful request of the Gatekeeper, Redis and this \
             load generator; busy: all cores; other: cores used by other processes)"
        );
        let disturbed: Vec<&str> = self
            .phases
            .iter()
            .filter(|p| p.cpu.other_pct.is_some_and(|o| o > DISTURBED_PCT))
            .map(|p| p.name.as_str())
            .collect();
        if !disturbed.is_empty() {
            let _ = writeln!(
                s,
                "  WARNING: other processes used more than {DISTURBED_PCT}% of the CPU during: {}; \
                 those figures are disturbed, run again on a quiet machine",
                disturbed.join(", ")
            );
        }
        for p in self.phases.iter().filter(|p| p.errors > 0) {
            let _ = writeln!(
                s,
                "  {}: {} errors, first: {}",
                p.name,
                p.errors,
                p.first_error.as_deref().unwrap_or("?")
            );
        }
        if let Some(cmp) = &self.lease_vs_signed {
            let _ = writeln!(s);
            let _ = write!(
                s,
                "lease-token status vs signed status: {:.2}x the throughput",
                cmp.throughput_ratio
            );
            if let Some(r) = cmp.server_cpu_ratio {
                let _ = write!(s, ", {r:.2}x less server CPU per status");
            }
            let _ = writeln!(
                s,
                "\n  (a peer also spends {:.1} µs to sign each status; the signed run sent \
                 pre-signed requests)",
                cmp.client_sign_us
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut ns: Vec<u64> = (1..=100).rev().map(|i| i * 1_000_000).collect();
        let p = Percentiles::of(&mut ns);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p90, 90.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
        assert_eq!(Percentiles::of(&mut []).max, 0.0);
        assert_eq!(Percentiles::of(&mut [3_000_000]).p50, 3.0);
    }
}

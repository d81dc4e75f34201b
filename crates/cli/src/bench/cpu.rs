//! CPU time used by the load generator, the Gatekeeper and Redis during a phase, so each
//! figure says who the 2 cores were busy for. Linux only (`/proc`); elsewhere the figures
//! are simply absent.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Phases shorter than this get no per-request CPU figures: the process counters tick
/// every 10 ms, too coarse for them.
const MIN_SPAN: Duration = Duration::from_millis(300);
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux target).
const TICKS_PER_SEC: f64 = 100.0;

/// Where to read CPU counters from.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    /// The Gatekeeper, when the bench started it.
    pub server_pid: Option<u32>,
    /// `host:port` of the Redis the Gatekeeper uses, for `INFO cpu`.
    pub redis_addr: Option<String>,
}

/// Counters at one instant; two of them give the use in between.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    loadgen_s: Option<f64>,
    server_s: Option<f64>,
    redis_s: Option<f64>,
    /// (busy, total) jiffies of the whole machine.
    machine: Option<(u64, u64)>,
}

/// CPU use during a phase, per successful request.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Gatekeeper process CPU per request, microseconds.
    pub gatekeeper_us_per_op: Option<f64>,
    /// Redis server CPU per request, microseconds.
    pub redis_us_per_op: Option<f64>,
    /// This (load generator) process's CPU per request, microseconds.
    pub loadgen_us_per_op: Option<f64>,
    /// How busy all cores of the machine were, percent.
    pub machine_busy_pct: Option<f64>,
    /// Share of all cores used by other processes (not the load generator, the
    /// Gatekeeper or Redis), percent: more than a few percent means the figures were
    /// disturbed.
    pub other_pct: Option<f64>,
}

impl Probes {
    pub async fn snapshot(&self) -> Snapshot {
        let redis_s = match &self.redis_addr {
            Some(addr) => redis_cpu_seconds(addr).await,
            None => None,
        };
        Snapshot {
            at: Instant::now(),
            loadgen_s: process_cpu_seconds("self"),
            server_s: self
                .server_pid
                .and_then(|pid| process_cpu_seconds(&pid.to_string())),
            redis_s,
            machine: machine_jiffies(),
        }
    }
}

impl Snapshot {
    /// Use between `self` (earlier) and `later`, spread over `ops` requests.
    pub fn usage_until(&self, later: &Snapshot, ops: usize) -> Usage {
        let long_enough = later.at.duration_since(self.at) >= MIN_SPAN;
        let per_op = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if ops > 0 && long_enough => {
                Some((b - a).max(0.0) * 1e6 / ops as f64)
            }
            _ => None,
        };
        let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        let (mut busy, mut other) = (None, None);
        if let (Some((b0, t0)), Some((b1, t1))) = (self.machine, later.machine)
            && t1 > t0
        {
            let busy_s = b1.saturating_sub(b0) as f64 / TICKS_PER_SEC;
            let total_s = (t1 - t0) as f64 / TICKS_PER_SEC;
            busy = Some(busy_s * 100.0 / total_s);
            // Ours: this process and the Gatekeeper (when it is ours), and Redis.
            let ours = delta(self.loadgen_s, later.loadgen_s).unwrap_or(0.0)
                + delta(self.server_s, later.server_s).unwrap_or(0.0)
                + delta(self.redis_s, later.redis_s).unwrap_or(0.0);
            if long_enough && self.server_s.is_some() {
                other = Some(((busy_s - ours) * 100.0 / total_s).max(0.0));
            }
        }
        Usage {
            gatekeeper_us_per_op: per_op(self.server_s, later.server_s),
            redis_us_per_op: per_op(self.redis_s, later.redis_s),
            loadgen_us_per_op: per_op(self.loadgen_s, later.loadgen_s),
            machine_busy_pct: busy,
            other_pct: other,
        }
    }
}

/// User plus system CPU seconds of a process (`self` or a pid).
fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// (busy, total) jiffies over all cores, from the first line of `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some((busy, busy + idle))
}

/// `host:port` of a plain `redis://host:port[/db]` URL; None when it carries
/// credentials or is not of that form (the CPU figure is then left out).
pub fn redis_host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis://")?;
    let hostport = rest.split('/').next()?;
    if hostport.contains('@') || hostport.is_empty() {
        return None;
    }
    Some(if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    })
}

/// Redis server CPU seconds (`used_cpu_sys + used_cpu_user` of `INFO cpu`).
async fn redis_cpu_seconds(addr: &str) -> Option<f64> {
    let work = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"INFO cpu\r\n").await.ok()?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        // A bulk string: "$<len>\r\n<text>\r\n". INFO cpu is a few hundred bytes.
        loop {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 64 * 1024 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n") {
                let len: usize = head.strip_prefix('$')?.parse().ok()?;
                if body.len() >= len {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let field = |name: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(field("used_cpu_sys:")? + field("used_cpu_user:")?)
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_give_host_and_port() {
        assert_eq!(
            redis_host_port("redis://127.0.0.1:7000").as_deref(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(
            redis_host_port("redis://localhost/2").as_deref(),
            Some("localhost:6379")
        );
        assert_eq!(redis_host_port("redis://:pw@host:1"), None);
        assert_eq!(redis_host_port("rediss://host:1"), None);
    }

    #[test]
    fn own_cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds("self").is_some());
            assert!(machine_jiffies().is_some());
        }
    }
}

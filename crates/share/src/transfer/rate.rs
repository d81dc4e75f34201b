//! A bandwidth cap shared by every transfer that passes through it.
//!
//! Each piece of data reserves its slot on one timeline that advances by
//! `bytes / rate` per piece; a caller waits until its slot starts. Time when nothing was
//! sent is not saved up, so after a pause the cap holds from the first piece on instead of
//! allowing a burst. Concurrent transfers share the rate because they share the timeline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lowest cap accepted. A piece is at most a few hundred KiB; below this rate one
/// piece could keep a connection silent long enough for the other side's idle timeout.
pub const MIN_RATE: u64 = 64 << 10;

/// A cap in bytes per second, shared through an `Arc`.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    /// When the next piece may start.
    next: Mutex<Instant>,
}

impl RateLimit {
    /// A cap of `bytes_per_second`, raised to [`MIN_RATE`] if lower.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(MIN_RATE),
            next: Mutex::new(Instant::now()),
        }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Reserves room for `bytes` and returns how long to wait before moving them.
    pub fn reserve(&self, bytes: usize) -> Duration {
        self.reserve_at(bytes, Instant::now())
    }

    fn reserve_at(&self, bytes: usize, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*next).max(now);
        *next = start + cost;
        start - now
    }

    /// Waits for room for `bytes` (async callers).
    pub async fn acquire(&self, bytes: usize) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits for room for `bytes` (callers on a blocking thread).
    pub fn acquire_blocking(&self, bytes: usize) {
        let wait = self.reserve(bytes);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_queue_one_after_another_at_the_rate() {
        let limit = RateLimit::new(1 << 20);
        let now = Instant::now();
        assert_eq!(limit.reserve_at(256 << 10, now), Duration::ZERO);
        assert_eq!(limit.reserve_at(256 << 10, now), Duration::from_millis(250));
        assert_eq!(limit.reserve_at(512 << 10, now), Duration::from_millis(500));
        // A fourth piece asked for later waits only for what is still queued.
        let later = now + Duration::from_millis(900);
        assert_eq!(limit.reserve_at(1, later), Duration::from_millis(100));
    }

    #[test]
    fn idle_time_is_not_saved_up_for_a_burst() {
        let limit = RateLimit::new(1 << 20);
        let now = Instant::now();
        limit.reserve_at(1 << 20, now);
        let much_later = now + Duration::from_secs(60);
        assert_eq!(limit.reserve_at(1 << 20, much_later), Duration::ZERO);
        assert_eq!(
            limit.reserve_at(1 << 20, much_later),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn caps_below_the_minimum_are_raised() {
        assert_eq!(RateLimit::new(1).bytes_per_second(), MIN_RATE);
        assert_eq!(RateLimit::new(10 << 20).bytes_per_second(), 10 << 20);
    }

    #[tokio::test]
    async fn a_capped_stream_takes_at_least_its_size_over_the_rate() {
        let limit = RateLimit::new(4 << 20);
        let started = Instant::now();
        for _ in 0..9 {
            limit.acquire(128 << 10).await;
        }
        // Nine pieces of 128 KiB: the first goes at once, eight wait 31.25 ms each.
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}

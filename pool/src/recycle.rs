//! Worker recycling: the limits past which a healthy worker is retired and replaced, and the
//! memory reading they are checked against.

use std::fmt;
use std::time::Duration;

/// Why the pool retired a healthy worker ([`PoolConfig::max_requests`],
/// [`PoolConfig::max_age`], [`PoolConfig::max_memory`]).
///
/// A retiring worker takes no new requests (a strict session bound to it keeps it until the
/// session ends), finishes those in flight, is stopped gracefully and replaced at once; the
/// replacement counts in [`PoolStats::recycles`], not as a restart.
///
/// [`PoolConfig::max_requests`]: crate::PoolConfig::max_requests
/// [`PoolConfig::max_age`]: crate::PoolConfig::max_age
/// [`PoolConfig::max_memory`]: crate::PoolConfig::max_memory
/// [`PoolStats::recycles`]: crate::PoolStats::recycles
///
/// ```
/// use snakepit::RecycleReason;
/// assert_eq!(RecycleReason::MaxRequests(100).to_string(), "it served its 100 requests");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecycleReason {
    /// It was handed this many requests.
    MaxRequests(u64),
    /// It had been ready for this long.
    MaxAge(Duration),
    /// Its resident memory was above the limit.
    MaxMemory {
        /// What it used, in bytes.
        rss_bytes: u64,
        /// The limit, in bytes.
        limit: u64,
    },
}

impl RecycleReason {
    /// The limit's name, as in metrics: `max_requests`, `max_age` or `max_memory`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecycleReason::MaxRequests(_) => "max_requests",
            RecycleReason::MaxAge(_) => "max_age",
            RecycleReason::MaxMemory { .. } => "max_memory",
        }
    }
}

impl fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecycleReason::MaxRequests(n) => write!(f, "it served its {n} requests"),
            RecycleReason::MaxAge(age) => write!(f, "it reached its maximum age of {age:?}"),
            RecycleReason::MaxMemory { rss_bytes, limit } => write!(
                f,
                "it used {} MiB of memory, over its limit of {} MiB",
                rss_bytes / (1024 * 1024),
                limit / (1024 * 1024)
            ),
        }
    }
}

/// The resident memory of process `pid` in bytes, where the platform tells (`/proc` on Linux).
///
/// ```
/// assert!(snakepit::resident_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
/// ```
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes(std::process::id()).expect("VmRSS in /proc");
            assert!(rss > 1024 * 1024, "{rss}");
        }
        assert_eq!(resident_bytes(u32::MAX), None);
    }

    #[test]
    fn reasons_read_as_sentences() {
        let memory = RecycleReason::MaxMemory {
            rss_bytes: 300 << 20,
            limit: 256 << 20,
        };
        assert_eq!(
            memory.to_string(),
            "it used 300 MiB of memory, over its limit of 256 MiB"
        );
    }
}

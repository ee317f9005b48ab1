//! What a load generator saw, over time: completed requests (and cache hits) in fixed
//! buckets from the start of the run, the longest pause between two answered requests, and
//! the connections that broke.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Width of one bucket of [`Recorder`].
pub const BUCKET: Duration = Duration::from_millis(500);

/// One bucket: requests answered in it, of which cache hits (memcached only).
#[derive(Debug, Default, Clone, Copy)]
pub struct Bucket {
    /// Requests answered.
    pub ops: u64,
    /// Of which `get`s that found their key.
    pub hits: u64,
    /// Of which `get`s that missed (then filled from the "database").
    pub misses: u64,
}

#[derive(Debug, Default)]
struct State {
    buckets: Vec<Bucket>,
    last_ok: Option<Instant>,
    /// The longest pause between two answered requests: (its start, its length).
    longest_gap: Option<(Instant, Duration)>,
    drops: Vec<(Duration, String)>,
    connect_failures: u64,
    bad_replies: Vec<(Duration, String)>,
    bad_count: u64,
}

/// Shared by the threads of one load generator.
#[derive(Debug)]
pub struct Recorder {
    t0: Instant,
    state: Mutex<State>,
}

/// What is left of a [`Recorder`] when the load ends.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Buckets of [`BUCKET`] from the start of the load.
    pub buckets: Vec<Bucket>,
    /// Seconds from the start of the load to the beginning of the longest pause.
    pub gap_start_s: f64,
    /// The longest pause between two answered requests (any connection), in seconds.
    pub gap_s: f64,
    /// Established connections that broke (reset, closed by the server, timed out): when, why.
    pub drops: Vec<(f64, String)>,
    /// Connection attempts that failed (refused, unreachable) while the service was away.
    pub connect_failures: u64,
    /// Replies that were not what the protocol or the data set says: the first few (seconds
    /// from the start, text) and how many in all.
    pub bad_replies: Vec<(f64, String)>,
    /// How many replies were bad.
    pub bad_count: u64,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// A recorder whose time 0 is `t0`.
    pub fn new(t0: Instant) -> Recorder {
        Recorder { t0, state: Mutex::new(State::default()) }
    }

    /// One answered request; `hit` is `Some` for a cache lookup.
    pub fn ok(&self, hit: Option<bool>) {
        let now = Instant::now();
        let i = (now.duration_since(self.t0).as_micros() / BUCKET.as_micros()) as usize;
        let mut s = lock(&self.state);
        if s.buckets.len() <= i {
            s.buckets.resize(i + 1, Bucket::default());
        }
        let b = &mut s.buckets[i];
        b.ops += 1;
        match hit {
            Some(true) => b.hits += 1,
            Some(false) => b.misses += 1,
            None => {}
        }
        if let Some(last) = s.last_ok {
            let gap = now.duration_since(last);
            if s.longest_gap.is_none_or(|(_, g)| gap > g) {
                s.longest_gap = Some((last, gap));
            }
        }
        s.last_ok = Some(now);
    }

    /// An established connection broke.
    pub fn dropped(&self, why: String) {
        let at = self.t0.elapsed();
        lock(&self.state).drops.push((at, why));
    }

    /// A connection attempt failed.
    pub fn connect_failed(&self) {
        lock(&self.state).connect_failures += 1;
    }

    /// A reply that should not have come.
    pub fn bad(&self, what: String) {
        let at = self.t0.elapsed();
        let mut s = lock(&self.state);
        s.bad_count += 1;
        if s.bad_replies.len() < 3 {
            s.bad_replies.push((at, what));
        }
    }

    /// Requests answered so far.
    pub fn total(&self) -> u64 {
        lock(&self.state).buckets.iter().map(|b| b.ops).sum()
    }

    /// The trace so far.
    pub fn trace(&self) -> Trace {
        let s = lock(&self.state);
        let (gap_start_s, gap_s) = s
            .longest_gap
            .map(|(at, g)| (at.duration_since(self.t0).as_secs_f64(), g.as_secs_f64()))
            .unwrap_or_default();
        Trace {
            buckets: s.buckets.clone(),
            gap_start_s,
            gap_s,
            drops: s.drops.iter().map(|(t, w)| (t.as_secs_f64(), w.clone())).collect(),
            connect_failures: s.connect_failures,
            bad_replies: s.bad_replies.iter().map(|(t, w)| (t.as_secs_f64(), w.clone())).collect(),
            bad_count: s.bad_count,
        }
    }
}

/// Per-second rates of a trace, with the event at `event_s` seconds as time 0: (seconds
/// relative to the event, requests/s, hit rate in % or `None` without lookups), one point
/// per bucket.
pub fn rates(t: &Trace, event_s: f64) -> Vec<(f64, f64, Option<f64>)> {
    let w = BUCKET.as_secs_f64();
    t.buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let looked = b.hits + b.misses;
            let hit = (looked > 0).then(|| 100.0 * b.hits as f64 / looked as f64);
            (i as f64 * w - event_s, b.ops as f64 / w, hit)
        })
        .collect()
}

/// Throughput before the event: the median request rate of the `window` seconds before it.
pub fn level_before(t: &Trace, event_s: f64, window: f64) -> f64 {
    let mut v: Vec<f64> =
        rates(t, event_s).into_iter().filter(|(x, _, _)| *x < 0.0 && *x >= -window).map(|(_, r, _)| r).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Mean hit rate (%) of the `window` seconds before (`after` false) or after the first
/// answered request following the event's pause (`after` true).
pub fn hit_rate(t: &Trace, event_s: f64, window: f64, after: bool) -> Option<f64> {
    let w = BUCKET.as_secs_f64();
    let from = if after { resumed_at(t, event_s)? } else { -window };
    let to = if after { from + window } else { 0.0 };
    let (mut hits, mut looked) = (0, 0);
    for (i, b) in t.buckets.iter().enumerate() {
        let x = i as f64 * w - event_s;
        if x >= from && x < to {
            hits += b.hits;
            looked += b.hits + b.misses;
        }
    }
    (looked > 0).then(|| 100.0 * hits as f64 / looked as f64)
}

/// Seconds from the event to the end of the longest run of buckets without an answered
/// request after it (the service answering again), or `None` if no bucket after the event was
/// empty or none came after the run. (A short stall before the real pause, e.g. while the
/// kernel loads, does not count.)
pub fn resumed_at(t: &Trace, event_s: f64) -> Option<f64> {
    let r = rates(t, event_s);
    let (mut best, mut run_start, mut best_end) = (0usize, None, None);
    for (i, (x, ops, _)) in r.iter().enumerate() {
        if *x < 0.0 {
            continue;
        }
        if *ops == 0.0 {
            run_start.get_or_insert(i);
        } else if let Some(s) = run_start.take() {
            if i - s > best {
                best = i - s;
                best_end = Some(*x);
            }
        }
    }
    best_end
}

/// Seconds from the event until the request rate is back to `fraction` of the level before
/// it (the first bucket after the pause at or above it), or `None` within the trace.
pub fn back_to(t: &Trace, event_s: f64, fraction: f64) -> Option<f64> {
    let level = level_before(t, event_s, 20.0);
    let r = rates(t, event_s);
    let start = resumed_at(t, event_s).unwrap_or(0.0);
    r.iter().find(|(x, ops, _)| *x >= start && *ops >= fraction * level).map(|(x, _, _)| *x + BUCKET.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(ops: &[u64]) -> Trace {
        Trace {
            buckets: ops.iter().map(|&o| Bucket { ops: o, hits: o / 2, misses: o - o / 2 }).collect(),
            gap_start_s: 0.0,
            gap_s: 0.0,
            drops: Vec::new(),
            connect_failures: 0,
            bad_replies: Vec::new(),
            bad_count: 0,
        }
    }

    #[test]
    fn resumes_after_the_longest_pause_not_the_first() {
        // Event at 2 s (bucket 4): a one-bucket stall, then a long pause, then back.
        let t = trace(&[10, 10, 10, 10, 10, 0, 10, 10, 0, 0, 0, 0, 5, 10, 10]);
        assert_eq!(resumed_at(&t, 2.0), Some(4.0));
        assert_eq!(back_to(&t, 2.0, 0.9), Some(5.0));
        assert_eq!(resumed_at(&trace(&[10, 10, 10]), 0.5), None);
    }
}

//! Throughput and latency over time, recorded lock-free (one row of atomic log-scale latency
//! buckets per second), and drawn as an SVG a user can open in a browser.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Buckets per power of two.
const SUB: u64 = 4;
/// Latency buckets: 4 per power of two from 1 µs to ~2^27 µs (134 s).
const BUCKETS: usize = 27 * SUB as usize;

/// See the module documentation.
pub struct Timeline {
    start: Instant,
    rows: Vec<Vec<AtomicU64>>,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Messages received in that second.
    pub count: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let pow = 63 - us.leading_zeros() as u64;
    let frac = if pow >= 2 {
        (us >> (pow - 2)) & (SUB - 1)
    } else {
        0
    };
    ((pow * SUB + frac) as usize).min(BUCKETS - 1)
}

fn bucket_upper_us(b: usize) -> u64 {
    let pow = b as u64 / SUB;
    let frac = b as u64 % SUB;
    if pow >= 2 {
        (SUB + frac + 1) << (pow - 2)
    } else {
        1 << (pow + 1)
    }
}

impl Timeline {
    /// A timeline for a run of at most `seconds`.
    pub fn new(seconds: usize) -> Timeline {
        Timeline {
            start: Instant::now(),
            rows: (0..seconds.max(1))
                .map(|_| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    /// Records one message received now with latency `us`.
    pub fn record(&self, us: u64) {
        let s = self.start.elapsed().as_secs() as usize;
        if let Some(row) = self.rows.get(s) {
            row[bucket(us)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Per-second counts and percentiles, up to the last second with data.
    pub fn seconds(&self) -> Vec<Second> {
        let mut out: Vec<Second> = self
            .rows
            .iter()
            .enumerate()
            .map(|(t, row)| {
                let counts: Vec<u64> = row.iter().map(|a| a.load(Ordering::Relaxed)).collect();
                let total: u64 = counts.iter().sum();
                let pct = |q: f64| {
                    let target = (total as f64 * q).ceil() as u64;
                    let mut seen = 0;
                    for (b, c) in counts.iter().enumerate() {
                        seen += c;
                        if seen >= target && *c > 0 {
                            return bucket_upper_us(b) as f64 / 1000.0;
                        }
                    }
                    0.0
                };
                Second {
                    t: t as u64,
                    count: total,
                    p50_ms: pct(0.5),
                    p99_ms: pct(0.99),
                }
            })
            .collect();
        while out.last().is_some_and(|s| s.count == 0) {
            out.pop();
        }
        out
    }
}

/// An SVG chart: messages/s as bars (left axis), p50 and p99 latency as lines (right axis).
pub fn svg(title: &str, seconds: &[Second]) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 420.0, 70.0, 70.0, 40.0, 40.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let n = seconds.len().max(1) as f64;
    let max_count = seconds.iter().map(|s| s.count).max().unwrap_or(1).max(1) as f64;
    let max_lat = seconds
        .iter()
        .map(|s| s.p99_ms)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"##,
        w / 2.0,
        escape(title)
    );
    let bw = pw / n;
    for (i, sec) in seconds.iter().enumerate() {
        let bh = ph * sec.count as f64 / max_count;
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#9ecae1"/>"##,
            left + i as f64 * bw + 1.0,
            top + ph - bh,
            (bw - 2.0).max(1.0),
            bh
        );
    }
    for (pick, color, label) in [(0usize, "#2171b5", "p50"), (1, "#cb181d", "p99")] {
        let points: Vec<String> = seconds
            .iter()
            .enumerate()
            .map(|(i, sec)| {
                let v = if pick == 0 { sec.p50_ms } else { sec.p99_ms };
                format!(
                    "{:.1},{:.1}",
                    left + (i as f64 + 0.5) * bw,
                    top + ph - ph * v / max_lat
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" fill="{color}">{label} latency</text>"##,
            w - right - 200.0 + pick as f64 * 100.0,
            top - 8.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/><line x1="{}" y1="{top}" x2="{}" y2="{}" stroke="black"/>"##,
        top + ph,
        left + pw,
        top + ph,
        top + ph,
        left + pw,
        left + pw,
        top + ph
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let y = top + ph - ph * f;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text><text x="{}" y="{:.1}">{:.1} ms</text>"##,
            left - 6.0,
            y + 4.0,
            max_count * f,
            left + pw + 6.0,
            y + 4.0,
            max_lat * f
        );
    }
    for k in 0..=5 {
        let f = k as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}</text>"##,
            left + pw * f,
            top + ph + 15.0,
            n * f
        );
    }
    // Axis titles: time below, the bars' unit on the left, the lines' on the right.
    let mid = top + ph / 2.0;
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">time since the run started (s)</text>"##,
        left + pw / 2.0,
        h - 6.0
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 16 {mid:.1})">messages received per second (bars)</text>"##
    );
    let rx = w - 12.0;
    let _ = writeln!(
        s,
        r##"<text x="{rx:.1}" y="{mid:.1}" text-anchor="middle" transform="rotate(90 {rx:.1} {mid:.1})">latency, ms (lines)</text></svg>"##
    );
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in [1u64, 2, 3, 5, 8, 100, 1000, 1500, 10_000, 1_000_000] {
            let b = bucket(us);
            assert!(b >= last);
            assert!(
                bucket_upper_us(b) >= us,
                "{us} -> bucket {b} upper {}",
                bucket_upper_us(b)
            );
            last = b;
        }
    }

    #[test]
    fn percentiles_and_svg() {
        let t = Timeline::new(2);
        for _ in 0..99 {
            t.record(1000);
        }
        t.record(100_000);
        let s = t.seconds();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].count, 100);
        assert!(s[0].p50_ms >= 1.0 && s[0].p50_ms < 1.3, "{}", s[0].p50_ms);
        let svg = svg("test <run>", &s);
        assert!(svg.starts_with("<svg") && svg.contains("test &lt;run&gt;"));
        for axis in [
            "time since the run started (s)",
            "messages received per second",
            "latency, ms",
        ] {
            assert!(svg.contains(axis), "{axis}");
        }
    }
}

//! Results: counts, rates and latency percentiles, as a summary or JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn from_us(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// What a run measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Connections asked for.
    pub connections_requested: usize,
    /// Connections that opened.
    pub connections_established: usize,
    /// Failed connection attempts, by cause.
    pub connect_failures: BTreeMap<String, u64>,
    /// Handshake latency.
    pub connect_latency: Percentiles,
    /// Handshakes per second during the ramp.
    pub connects_per_sec: f64,
    /// Messages sent (echo).
    pub sent: u64,
    /// Messages received back (echo).
    pub received: u64,
    /// Messages received out of order or twice.
    pub out_of_order: u64,
    /// Round trips per second over the measuring window (echo).
    pub round_trips_per_sec: f64,
    /// Round-trip latency (echo).
    pub round_trip_latency: Percentiles,
    /// Connections that closed or failed while held.
    pub dropped_while_held: u64,
    /// Publish or push requests that succeeded (fanout, direct).
    pub published: u64,
    /// Failed publish requests, by cause.
    pub publish_errors: BTreeMap<String, u64>,
    /// Successful publish requests per second.
    pub publishes_per_sec: f64,
    /// Publish request latency.
    pub publish_latency: Percentiles,
    /// Deliveries the successful publishes should have caused.
    pub expected_deliveries: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Messages received twice.
    pub duplicates: u64,
    /// Deliveries per second, from the first publish to the last delivery.
    pub deliveries_per_sec: f64,
    /// Publish-to-receive latency.
    pub delivery_latency: Percentiles,
    /// Messages received and latency, second by second since the run started.
    pub timeline: Vec<crate::timeline::Second>,
    /// The server's CPU time (user + system, all its threads) from the first publish to the
    /// last delivery, when `--server-pid` names it (fanout, direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
    /// `server_cpu_secs` per delivery received, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The kernel's `ksoftirqd` threads' CPU time (every core) over the same window: network
    /// work deferred out of the sending process, which `server_cpu_secs` does not include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softirq_cpu_secs: Option<f64>,
    /// `server_cpu_secs` + `softirq_cpu_secs` per delivery received, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_and_softirq_cpu_us_per_delivery: Option<f64>,
    /// A worker process's delivery-latency histogram as (µs, count) pairs, so the parent can
    /// compute true percentiles over every worker (empty outside worker processes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_histogram: Vec<(u64, u64)>,
}

/// A histogram's recorded values as (µs, count) pairs.
pub fn histogram_counts(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

impl Percentiles {
    /// The worse of two (the larger value of each percentile); counts add.
    fn worst(&self, other: &Percentiles) -> Percentiles {
        Percentiles {
            count: self.count + other.count,
            p50_ms: self.p50_ms.max(other.p50_ms),
            p90_ms: self.p90_ms.max(other.p90_ms),
            p99_ms: self.p99_ms.max(other.p99_ms),
            p999_ms: self.p999_ms.max(other.p999_ms),
            max_ms: self.max_ms.max(other.max_ms),
        }
    }
}

impl RunResult {
    /// Records the server's (and the `ksoftirqd` threads') CPU time over the run, and per
    /// delivery received.
    pub fn set_server_cpu(&mut self, used: crate::server_cpu::CpuSample) {
        let per = |secs: f64| (self.received > 0).then(|| secs * 1e6 / self.received as f64);
        self.server_cpu_secs = Some(used.server);
        self.server_cpu_us_per_delivery = per(used.server);
        self.softirq_cpu_secs = Some(used.softirq);
        self.server_and_softirq_cpu_us_per_delivery = per(used.server + used.softirq);
    }

    /// Merges the results of worker processes that ran side by side: counts and rates add,
    /// percentiles are the worst worker's.
    pub fn merge(results: Vec<RunResult>) -> RunResult {
        let mut total = RunResult::default();
        for r in results {
            total.scenario = r.scenario.clone();
            total.connections_requested += r.connections_requested;
            total.connections_established += r.connections_established;
            for (k, v) in r.connect_failures {
                *total.connect_failures.entry(k).or_default() += v;
            }
            total.connect_latency = total.connect_latency.worst(&r.connect_latency);
            total.connects_per_sec += r.connects_per_sec;
            total.sent += r.sent;
            total.received += r.received;
            total.out_of_order += r.out_of_order;
            total.round_trips_per_sec += r.round_trips_per_sec;
            total.round_trip_latency = total.round_trip_latency.worst(&r.round_trip_latency);
            total.dropped_while_held += r.dropped_while_held;
            total.expected_deliveries += r.expected_deliveries;
            total.lost += r.lost;
            total.duplicates += r.duplicates;
            total.deliveries_per_sec += r.deliveries_per_sec;
            for (i, s) in r.timeline.into_iter().enumerate() {
                match total.timeline.get_mut(i) {
                    Some(t) => {
                        t.count += s.count;
                        t.p50_ms = t.p50_ms.max(s.p50_ms);
                        t.p99_ms = t.p99_ms.max(s.p99_ms);
                    }
                    None => total.timeline.push(s),
                }
            }
        }
        total
    }
}

/// Prints a human summary, or JSON.
pub fn print(r: &RunResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!("scenario: {}", r.scenario);
    println!(
        "connections: {}/{} established, {:.0} handshakes/s, connect p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        r.connections_established,
        r.connections_requested,
        r.connects_per_sec,
        r.connect_latency.p50_ms,
        r.connect_latency.p99_ms,
        r.connect_latency.max_ms
    );
    if !r.connect_failures.is_empty() {
        println!("connect failures: {:?}", r.connect_failures);
    }
    if r.dropped_while_held > 0 {
        println!("dropped while held: {}", r.dropped_while_held);
    }
    if r.published > 0 || !r.publish_errors.is_empty() {
        println!(
            "published: {} requests ({:.0}/s), request p50 {:.2} ms p99 {:.2} ms; errors {:?}",
            r.published,
            r.publishes_per_sec,
            r.publish_latency.p50_ms,
            r.publish_latency.p99_ms,
            r.publish_errors
        );
        println!(
            "delivered: {}/{} ({} lost, {} duplicates, {} out of order), {:.0} deliveries/s",
            r.received,
            r.expected_deliveries,
            r.lost,
            r.duplicates,
            r.out_of_order,
            r.deliveries_per_sec
        );
        let l = &r.delivery_latency;
        println!(
            "publish to receive: p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        if let (Some(secs), Some(per)) = (r.server_cpu_secs, r.server_cpu_us_per_delivery) {
            println!("server CPU: {secs:.2} s, {per:.2} µs per delivery");
        }
        if let (Some(secs), Some(per)) =
            (r.softirq_cpu_secs, r.server_and_softirq_cpu_us_per_delivery)
        {
            println!("ksoftirqd CPU: {secs:.2} s; server + ksoftirqd {per:.2} µs per delivery");
        }
        return;
    }
    if r.sent > 0 {
        println!(
            "messages: {} sent, {} received, {} out of order; {:.0} round trips/s",
            r.sent, r.received, r.out_of_order, r.round_trips_per_sec
        );
        let l = &r.round_trip_latency;
        println!(
            "round trip: p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
}

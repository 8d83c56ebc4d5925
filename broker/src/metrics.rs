//! Prometheus metrics of one node. Every drop and disconnect is counted with a `reason`.
//!
//! The label values alerts and dashboards name (drop reasons, `$disconnect` outcomes, handshake
//! rejections, cluster drops) start at 0, so every family is exported from the start and a
//! `rate()` over it has a series before the first event. The process's own CPU, memory and
//! file descriptors are exported as the standard `process_*` metrics (Linux).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The node's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `gangway_connections`: open WebSocket connections.
    pub connections: IntGauge,
    /// `gangway_connections_opened_total`.
    pub connections_opened_total: IntCounter,
    /// `gangway_connections_closed_total{reason}`.
    pub connections_closed_total: IntCounterVec,
    /// `gangway_handshakes_rejected_total{reason}`: upgrades that never became connections.
    pub handshakes_rejected_total: IntCounterVec,
    /// `gangway_messages_received_total{route}`: inbound messages by selected route.
    pub messages_received_total: IntCounterVec,
    /// `gangway_messages_sent_total{source}`: frames queued to clients (route, push, error).
    pub messages_sent_total: IntCounterVec,
    /// `gangway_integration_duration_seconds{route}`.
    pub integration_duration_seconds: HistogramVec,
    /// `gangway_integration_errors_total{route,kind}`.
    pub integration_errors_total: IntCounterVec,
    /// `gangway_outbound_dropped_total{reason}`: messages that did not reach a client.
    pub outbound_dropped_total: IntCounterVec,
    /// `gangway_disconnect_events_total{outcome}`: `$disconnect` deliveries.
    pub disconnect_events_total: IntCounterVec,
    /// `gangway_control_requests_total{operation,status}`.
    pub control_requests_total: IntCounterVec,
    /// `gangway_cluster_redis_up`: 1 while Redis answers (cluster mode).
    pub cluster_redis_up: IntGauge,
    /// `gangway_cluster_messages_total{direction,kind}`: messages from other nodes.
    pub cluster_messages_total: IntCounterVec,
    /// `gangway_cluster_dropped_total{reason}`: cluster messages lost or not sent.
    pub cluster_dropped_total: IntCounterVec,
    /// `gangway_cluster_reaped_connections_total`: connections of dead nodes this node reaped.
    pub cluster_reaped_total: IntCounter,
    /// `gangway_cluster_fenced`: 1 while this node is fenced (cut off from Redis while its peers
    /// reach it: clients closed with 1012, upgrades refused).
    pub cluster_fenced: IntGauge,
    /// `gangway_cluster_fenced_connections_total`: connections this node closed because it was
    /// fenced, or because it found, when Redis answered again, that a survivor had reaped it.
    pub cluster_fenced_connections_total: IntCounter,
    /// `gangway_messages_written_through_total`: fan-out frames sent straight to a socket by
    /// the publisher (also counted in `messages_sent_total`).
    pub messages_written_through_total: IntCounter,
    /// `gangway_max_connections`: the configured `[limits] max_connections`.
    pub max_connections: IntGauge,
    /// `gangway_cluster_enabled`: 1 in cluster mode (so Redis alerts skip single nodes).
    pub cluster_enabled: IntGauge,
    /// `gangway_send_path_uring`: 1 while write-through fan-outs send through `io_uring`, 0
    /// when they use `sendmsg` (`[limits] send_path`, the startup probe, or a ring that failed).
    pub send_path_uring: IntGauge,
    /// `gangway_history_bytes`: memory channel history takes, with bookkeeping.
    pub history_bytes: IntGauge,
    /// `gangway_history_messages`: messages channel history keeps.
    pub history_messages: IntGauge,
    /// `gangway_history_evicted_total`: kept messages dropped early to hold the node-wide
    /// history bounds (`[limits] history_max_bytes`, `history_max_messages`).
    pub history_evicted_total: IntCounter,
    /// `gangway_recoveries_total{result}`: recoveries on reconnect (`recovered`, `lost`,
    /// `no_history`, `not_subscribed`).
    pub recoveries_total: IntCounterVec,
}

/// `gangway_outbound_dropped_total` reasons exported from the start.
const DROP_REASONS: &[&str] = &[
    "slow_consumer",
    "queue_full",
    "connection_closing",
    "connection_closed",
    "write_timeout",
];
/// `gangway_disconnect_events_total` outcomes.
const DISCONNECT_OUTCOMES: &[&str] = &["delivered", "rejected", "retried", "failed"];
/// `gangway_handshakes_rejected_total` reasons exported from the start.
const REJECT_REASONS: &[&str] = &[
    "capacity",
    "handshakes_full",
    "timeout",
    "malformed",
    "rate_limited",
    "tls",
    "unauthorized",
    "forbidden",
];
/// `gangway_integration_errors_total` kinds (a non-2xx answer, then the transport's errors).
const INTEGRATION_ERROR_KINDS: &[&str] = &[
    "status",
    "timeout",
    "unreachable",
    "response_too_large",
    "malformed_result",
    "function_error",
    "service_error",
];
/// `gangway_messages_sent_total` sources exported from the start.
const SENT_SOURCES: &[&str] = &[
    "route",
    "push",
    "publish",
    "broadcast",
    "gateway",
    "recovery",
];
/// `gangway_cluster_dropped_total` reasons exported from the start.
const CLUSTER_DROP_REASONS: &[&str] = &["inbox_full", "malformed", "too_large", "publish_failed"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            connections: IntGauge::new("gangway_connections", "Open WebSocket connections")
                .unwrap_or_else(|_| unreachable_metric()),
            connections_opened_total: IntCounter::new(
                "gangway_connections_opened_total",
                "WebSocket connections accepted",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            connections_closed_total: counter_vec(
                "gangway_connections_closed_total",
                "WebSocket connections closed, by reason",
                &["reason"],
            ),
            handshakes_rejected_total: counter_vec(
                "gangway_handshakes_rejected_total",
                "Upgrade requests that did not become connections, by reason",
                &["reason"],
            ),
            messages_received_total: counter_vec(
                "gangway_messages_received_total",
                "Inbound client messages, by selected route",
                &["route"],
            ),
            messages_sent_total: counter_vec(
                "gangway_messages_sent_total",
                "Messages queued to clients, by source",
                &["source"],
            ),
            integration_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "gangway_integration_duration_seconds",
                    "Backend call latency, by route",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["route"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
            integration_errors_total: counter_vec(
                "gangway_integration_errors_total",
                "Failed backend calls, by route and kind",
                &["route", "kind"],
            ),
            outbound_dropped_total: counter_vec(
                "gangway_outbound_dropped_total",
                "Messages that did not reach a client, by reason",
                &["reason"],
            ),
            disconnect_events_total: counter_vec(
                "gangway_disconnect_events_total",
                "$disconnect event deliveries, by outcome",
                &["outcome"],
            ),
            control_requests_total: counter_vec(
                "gangway_control_requests_total",
                "Control API requests, by operation and status",
                &["operation", "status"],
            ),
            cluster_redis_up: IntGauge::new(
                "gangway_cluster_redis_up",
                "1 while Redis answers (cluster mode)",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            cluster_messages_total: counter_vec(
                "gangway_cluster_messages_total",
                "Messages from other nodes, by direction and kind",
                &["direction", "kind"],
            ),
            cluster_dropped_total: counter_vec(
                "gangway_cluster_dropped_total",
                "Cluster messages lost or not sent, by reason",
                &["reason"],
            ),
            cluster_reaped_total: IntCounter::new(
                "gangway_cluster_reaped_connections_total",
                "Connections of dead nodes this node sent $disconnect for",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            cluster_fenced: IntGauge::new(
                "gangway_cluster_fenced",
                "1 while this node is fenced: cut off from Redis while its peers reach it",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            cluster_fenced_connections_total: IntCounter::new(
                "gangway_cluster_fenced_connections_total",
                "Connections closed because this node was fenced or found itself reaped",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            messages_written_through_total: IntCounter::new(
                "gangway_messages_written_through_total",
                "Fan-out frames the publisher wrote straight to a client's socket",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            max_connections: IntGauge::new(
                "gangway_max_connections",
                "The configured [limits] max_connections",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            cluster_enabled: IntGauge::new(
                "gangway_cluster_enabled",
                "1 when the node runs in cluster mode",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            send_path_uring: IntGauge::new(
                "gangway_send_path_uring",
                "1 while write-through fan-outs send through io_uring, 0 for sendmsg",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            history_bytes: IntGauge::new(
                "gangway_history_bytes",
                "Memory channel history takes on this node, bookkeeping included",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            history_messages: IntGauge::new(
                "gangway_history_messages",
                "Messages channel history keeps on this node",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            history_evicted_total: IntCounter::new(
                "gangway_history_evicted_total",
                "Kept messages dropped early to hold the node-wide history bounds",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            recoveries_total: counter_vec(
                "gangway_recoveries_total",
                "Recoveries on reconnect, by result",
                &["result"],
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.connections.clone()),
            Box::new(m.connections_opened_total.clone()),
            Box::new(m.connections_closed_total.clone()),
            Box::new(m.handshakes_rejected_total.clone()),
            Box::new(m.messages_received_total.clone()),
            Box::new(m.messages_sent_total.clone()),
            Box::new(m.integration_duration_seconds.clone()),
            Box::new(m.integration_errors_total.clone()),
            Box::new(m.outbound_dropped_total.clone()),
            Box::new(m.disconnect_events_total.clone()),
            Box::new(m.control_requests_total.clone()),
            Box::new(m.cluster_redis_up.clone()),
            Box::new(m.cluster_messages_total.clone()),
            Box::new(m.cluster_dropped_total.clone()),
            Box::new(m.cluster_reaped_total.clone()),
            Box::new(m.cluster_fenced.clone()),
            Box::new(m.cluster_fenced_connections_total.clone()),
            Box::new(m.messages_written_through_total.clone()),
            Box::new(m.max_connections.clone()),
            Box::new(m.cluster_enabled.clone()),
            Box::new(m.send_path_uring.clone()),
            Box::new(m.history_bytes.clone()),
            Box::new(m.history_messages.clone()),
            Box::new(m.history_evicted_total.clone()),
            Box::new(m.recoveries_total.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            // Names are distinct constants, so registration cannot collide.
            let _ = m.registry.register(c);
        }
        let prime = |vec: &IntCounterVec, values: &[&str]| {
            for v in values {
                let _ = vec.with_label_values(&[v]);
            }
        };
        prime(&m.outbound_dropped_total, DROP_REASONS);
        prime(&m.disconnect_events_total, DISCONNECT_OUTCOMES);
        prime(&m.handshakes_rejected_total, REJECT_REASONS);
        prime(&m.cluster_dropped_total, CLUSTER_DROP_REASONS);
        prime(&m.messages_sent_total, SENT_SOURCES);
        prime(
            &m.recoveries_total,
            &["recovered", "lost", "no_history", "not_subscribed"],
        );
        for kind in ["request", "reply", "publish", "broadcast"] {
            let _ = m.cluster_messages_total.with_label_values(&["in", kind]);
        }
        m
    }

    /// Exports route `key`'s series from the start: messages received, and for a route that
    /// calls a backend its latency histogram and an error count per kind (so an error-ratio
    /// alert has both sides before the first call).
    pub fn prime_route(&self, key: &str, calls_backend: bool) {
        let _ = self.messages_received_total.with_label_values(&[key]);
        if calls_backend {
            let _ = self.integration_duration_seconds.with_label_values(&[key]);
            for kind in INTEGRATION_ERROR_KINDS {
                let _ = self
                    .integration_errors_total
                    .with_label_values(&[key, kind]);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric())
}

/// Metric definitions are constants checked by the tests; a bad one is a programming error.
fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.connections.inc();
        m.outbound_dropped_total
            .with_label_values(&["slow_consumer"])
            .inc();
        let text = m.render();
        assert!(text.contains("gangway_connections 1"));
        assert!(text.contains("gangway_outbound_dropped_total{reason=\"slow_consumer\"} 1"));
    }

    #[test]
    fn alerting_families_and_process_metrics_exist_before_any_event() {
        let text = Metrics::new().render();
        for family in [
            "gangway_outbound_dropped_total{reason=\"queue_full\"} 0",
            "gangway_disconnect_events_total{outcome=\"failed\"} 0",
            "gangway_handshakes_rejected_total{reason=\"capacity\"} 0",
            "gangway_cluster_dropped_total{reason=\"inbox_full\"} 0",
            "gangway_max_connections 0",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
    }
}

//! Prometheus metrics of one node. Every drop and disconnect is counted with a `reason`.

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
}

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
        ];
        for c in collectors {
            // Names are distinct constants, so registration cannot collide.
            let _ = m.registry.register(c);
        }
        m
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
}

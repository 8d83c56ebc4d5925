//! Wiring of a Gangway node: binds both listeners, starts the broker and the control API, and
//! stops them in order. The `gangway` binary and the integration tests both start nodes here.

use std::net::SocketAddr;
use std::sync::Arc;

pub mod config;
pub mod probe;
pub mod reload;
pub mod tls;

use gangway_broker::{Broker, BrokerError};
use gangway_control_api::peer::HttpWitness;
use gangway_control_api::{Access, Reload as _, ReloadOutcome, ServerOptions};
use tokio::task::JoinHandle;

pub use config::GatewayConfig;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The broker could not be built.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A listener could not be bound.
    #[error("cannot bind the {which} listener on {addr}")]
    Bind {
        /// `websocket` or `control`.
        which: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client for peer checks could not be built.
    #[error("cannot build the peer-check HTTP client: {0}")]
    PeerClient(String),
    /// A listener's certificate could not be loaded.
    #[error("cannot use the {0} listener's certificate: {1}")]
    Tls(&'static str, tls::TlsError),
}

/// Listen backlog of the public listener: connection bursts must not overflow the SYN queue.
const WEBSOCKET_BACKLOG: u32 = 4096;
/// Listen backlog of the control listener.
const CONTROL_BACKLOG: u32 = 1024;

/// A listener with `SO_REUSEADDR`, so a node restarted after a crash binds its ports again at
/// once (connections of the dead process may linger in TIME_WAIT).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A started node.
pub struct Node {
    /// The broker (data plane) handle.
    pub broker: Broker,
    /// Where WebSocket clients connect.
    pub websocket_addr: SocketAddr,
    /// Where the control API listens.
    pub control_addr: SocketAddr,
    control: actix_web::dev::ServerHandle,
    control_task: JoinHandle<std::io::Result<()>>,
    broker_task: JoinHandle<()>,
    reloader: Option<Arc<reload::Reloader>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("websocket_addr", &self.websocket_addr)
            .field("control_addr", &self.control_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Binds `config.listen.*` (port 0 picks a free port) and starts serving.
    ///
    /// # Errors
    /// Fails when a listener cannot be bound or the broker cannot be built.
    pub async fn start(config: GatewayConfig) -> Result<Node, StartError> {
        Node::start_with(config, None).await
    }

    /// As [`Node::start`]; with a `loader`, the node can reload ([`Node::reload`], SIGHUP in
    /// the binary, `POST /@admin/reload`) by calling it for the new configuration.
    ///
    /// # Errors
    /// Fails when a listener cannot be bound or the broker cannot be built.
    pub async fn start_with(
        config: GatewayConfig,
        loader: Option<reload::Loader>,
    ) -> Result<Node, StartError> {
        let running = config.clone();
        // rustls is built with two providers (ring for the node's clients, aws-lc-rs for the
        // listeners: src/tls.rs); clients that take the process default (Redis, reqwest) get ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // TLS first: a certificate that does not load stops the start before any port binds.
        let tls_for = |files: &Option<tls::TlsFiles>, which| -> Result<_, StartError> {
            files
                .as_ref()
                .map(tls::server_config)
                .transpose()
                .map_err(|e| StartError::Tls(which, e))
        };
        let ws_tls = tls_for(&config.tls.websocket, "websocket")?;
        let control_tls = tls_for(&config.tls.control, "control")?;
        let certificates = reload::Certificates {
            websocket: ws_tls.as_ref().map(|(_, c)| Arc::clone(c)),
            control: control_tls.as_ref().map(|(_, c)| Arc::clone(c)),
        };
        let ws_addr = config.listen.websocket;
        let control_addr = config.listen.control;
        let ws_listener = bind(ws_addr, WEBSOCKET_BACKLOG).map_err(|source| StartError::Bind {
            which: "websocket",
            addr: ws_addr,
            source,
        })?;
        let control_listener = bind(control_addr, CONTROL_BACKLOG)
            .and_then(tokio::net::TcpListener::into_std)
            .map_err(|source| StartError::Bind {
                which: "control",
                addr: control_addr,
                source,
            })?;
        let bound = |l: std::io::Result<SocketAddr>, which, addr| {
            l.map_err(|source| StartError::Bind {
                which,
                addr,
                source,
            })
        };
        let websocket_addr = bound(ws_listener.local_addr(), "websocket", ws_addr)?;
        let control_local = bound(control_listener.local_addr(), "control", control_addr)?;
        let control_url = config.broker.cluster.control_url.clone();
        let broker = Broker::new(config.broker)?;
        let access = Access::new(config.control);
        if broker.cluster_health().is_some() {
            // Where peers reach this node when one of them loses Redis (see ARCHITECTURE.md,
            // "The $disconnect contract").
            match control_url.or_else(|| {
                (!control_local.ip().is_unspecified()).then(|| format!("http://{control_local}"))
            }) {
                Some(url) => {
                    let witness = HttpWitness::new(Arc::clone(&access))
                        .map_err(|e| StartError::PeerClient(e.to_string()))?;
                    broker.enable_peer_checks(url, Arc::new(witness));
                }
                None => tracing::warn!(
                    "peer checks off: the control API listens on an unspecified address; set cluster.control_url so other nodes can reach it"
                ),
            }
        }
        // Join the cluster before serving, so connections are recorded from the first one.
        if !broker.wait_joined(std::time::Duration::from_secs(3)).await {
            tracing::warn!("Redis did not answer: serving local traffic; cross-node calls answer 503 until it does");
        }
        let reloader = loader.map(|loader| {
            Arc::new(reload::Reloader::new(
                loader,
                broker.clone(),
                Arc::clone(&access),
                certificates,
                running,
            ))
        });
        let server = gangway_control_api::serve(
            broker.clone(),
            control_listener,
            ServerOptions {
                access,
                reload: reloader
                    .clone()
                    .map(|r| r as Arc<dyn gangway_control_api::Reload>),
                tls: control_tls.map(|(config, _)| config),
                ..ServerOptions::default()
            },
        )
        .map_err(|source| StartError::Bind {
            which: "control",
            addr: control_addr,
            source,
        })?;
        let control = server.handle();
        let control_task = tokio::spawn(server);
        let b = broker.clone();
        let broker_task = match ws_tls {
            Some((config, _)) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tokio::spawn(async move { b.serve_tls(ws_listener, acceptor).await })
            }
            None => tokio::spawn(async move { b.serve(ws_listener).await }),
        };
        tracing::info!(
            websocket = %websocket_addr,
            control = %control_local,
            node_id = broker.node_id(),
            stage = %broker.config().api.stage,
            "gangway node started"
        );
        Ok(Node {
            broker,
            websocket_addr,
            control_addr: control_local,
            control,
            control_task,
            broker_task,
            reloader,
        })
    }

    /// Reloads the configuration (see [`reload`]); `Err` when the node was started without a
    /// loader or the new configuration was refused (the running one stays).
    pub async fn reload(&self) -> Result<ReloadOutcome, String> {
        match &self.reloader {
            Some(r) => r.reload().await,
            None => Err("this node was started without a configuration source".into()),
        }
    }

    /// Drains: stop accepting, close clients with 1001, deliver their `$disconnect` events,
    /// then stop the control API.
    pub async fn shutdown(self) {
        self.broker.shutdown().await;
        let _ = self.broker_task.await;
        self.control.stop(true).await;
        let _ = self.control_task.await;
        tracing::info!("gangway node stopped");
    }
}

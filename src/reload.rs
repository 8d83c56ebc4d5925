//! Reloading a running node (SIGHUP, `POST /@admin/reload`): re-read the configuration the way
//! the node was started (file, environment, flags), refuse it whole if it has problems, else
//! hand the data plane's part to the broker and the `[control]` part to the control API.
//! `[listen]` and `[log]` (but `access`) are fixed at start and reported as needing a restart.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use gangway_broker::Broker;
use gangway_control_api::{Access, Reload, ReloadOutcome};

use crate::config::GatewayConfig;

/// Where a reload reads the configuration from; `Err` lists its problems.
pub type Loader = Arc<dyn Fn() -> Result<GatewayConfig, String> + Send + Sync>;

/// The certificates a node serves, which a reload re-reads from their files.
#[derive(Debug, Default)]
pub struct Certificates {
    /// The WebSocket listener's, with `[tls.websocket]`.
    pub websocket: Option<Arc<crate::tls::Certificate>>,
    /// The control listener's, with `[tls.control]`.
    pub control: Option<Arc<crate::tls::Certificate>>,
}

/// A node's reload. See the module documentation.
pub struct Reloader {
    loader: Loader,
    broker: Broker,
    access: Arc<Access>,
    certificates: Certificates,
    /// The configuration the node runs with (as loaded; restart-only parts as started).
    /// Locked for a whole reload, so two reloads never interleave.
    running: tokio::sync::Mutex<GatewayConfig>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reload for the node running `running`, re-reading through `loader`.
    pub fn new(
        loader: Loader,
        broker: Broker,
        access: Arc<Access>,
        certificates: Certificates,
        running: GatewayConfig,
    ) -> Reloader {
        Reloader {
            loader,
            broker,
            access,
            certificates,
            running: tokio::sync::Mutex::new(running),
        }
    }

    async fn run(&self) -> Result<ReloadOutcome, String> {
        let mut running = self.running.lock().await;
        let new = (self.loader)()?;
        let mut need_restart = Vec::new();
        if new.listen.websocket != running.listen.websocket {
            need_restart.push("listen.websocket".to_string());
        }
        if new.listen.control != running.listen.control {
            need_restart.push("listen.control".to_string());
        }
        if new.log.format != running.log.format {
            need_restart.push("log.format".to_string());
        }
        if new.log.level != running.log.level {
            need_restart.push("log.level".to_string());
        }
        // Certificates are re-read from their files even when the paths did not change (a
        // renewed certificate in place); one that does not load refuses the whole reload.
        let mut renewed = Vec::new();
        for (which, cert, old, new_files) in [
            (
                "tls.websocket",
                &self.certificates.websocket,
                &running.tls.websocket,
                &new.tls.websocket,
            ),
            (
                "tls.control",
                &self.certificates.control,
                &running.tls.control,
                &new.tls.control,
            ),
        ] {
            match (cert, new_files) {
                (Some(_), Some(files)) => {
                    let key =
                        crate::tls::certified_key(files).map_err(|e| format!("{which}: {e}"))?;
                    renewed.push((which, key));
                    if old.as_ref().and_then(|o| o.client_ca_file.as_ref())
                        != files.client_ca_file.as_ref()
                    {
                        need_restart.push(format!("{which}.client_ca_file"));
                    }
                }
                (None, None) => {}
                _ => need_restart.push(which.to_string()),
            }
        }
        let report = self
            .broker
            .reload(new.broker.clone())
            .map_err(|e| format!("cannot apply the new routes: {e}"))?;
        let mut applied = report.applied;
        need_restart.extend(report.need_restart);
        for (which, key) in renewed {
            let cert = match which {
                "tls.websocket" => &self.certificates.websocket,
                _ => &self.certificates.control,
            };
            if let Some(c) = cert {
                c.store(key);
                applied.push(format!("{which}.cert_file"));
            }
        }
        if new.control != running.control {
            self.access.replace(new.control.clone());
            applied.push("control".to_string());
        }
        let listen = running.listen.clone();
        let log_format = running.log.format;
        let log_level = running.log.level.clone();
        *running = new;
        // What is fixed at start stays as started, so the next reload compares against it.
        running.listen = listen;
        running.log.format = log_format;
        running.log.level = log_level;
        Ok(ReloadOutcome {
            applied,
            need_restart,
        })
    }
}

impl Reload for Reloader {
    fn reload(&self) -> BoxFuture<'_, Result<ReloadOutcome, String>> {
        async move {
            let outcome = self.run().await;
            match &outcome {
                Ok(o) => tracing::info!(
                    applied = ?o.applied,
                    need_restart = ?o.need_restart,
                    "configuration reloaded"
                ),
                Err(e) => tracing::error!(
                    problems = %e,
                    "configuration reload refused; the running configuration stays"
                ),
            }
            outcome
        }
        .boxed()
    }
}

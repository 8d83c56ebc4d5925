//! Reloading a node's configuration without dropping a client (SIGHUP, `POST /@admin/reload`).
//!
//! Invariants:
//! - a reload is all or nothing: the caller validated the whole new file first, and if the new
//!   routes cannot be built nothing changes;
//! - the new configuration and routes replace the old ones whole (two atomic swaps, routes
//!   last), so every event sees one configuration; events already running finish with theirs;
//! - settings fixed at start ([`RESTART_ONLY`]: what listeners, slots, semaphores, the
//!   WebSocket codec and the cluster were built from) keep their running values, and the
//!   report names the ones the new file changed, so an operator knows a restart is due.

use std::sync::Arc;

use crate::config::Config;
use crate::error::BrokerError;
use crate::integration::Routes;
use crate::state::NodeState;

/// Settings a reload cannot change on a running node (a restart applies them).
pub const RESTART_ONLY: &[&str] = &[
    "api.stage",
    "limits.max_message_bytes",
    "limits.max_frame_bytes",
    "limits.max_connections",
    "limits.max_pending_handshakes",
    "limits.max_batch_bytes",
    "limits.write_through_max_recipients",
    "limits.send_path",
    "limits.connections_per_ip_per_sec",
    "cluster",
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Settings (dotted keys, or `routes`) that changed and apply to new events now.
    pub applied: Vec<String>,
    /// Settings that changed but keep their running values until a restart.
    pub need_restart: Vec<String>,
}

/// Swaps `new` in (restart-only settings kept from the running configuration).
pub(crate) fn apply(state: &NodeState, mut new: Config) -> Result<Report, BrokerError> {
    let old = state.config.load_full();
    let mut report = Report::default();
    keep_restart_only(&old, &mut new, &mut report.need_restart);
    report.applied = applied(&old, &new);
    let routes = Routes::new(
        &new,
        crate::integration::webhook_key(&new),
        Arc::clone(&state.metrics),
    )?;
    let gate = crate::authorizer::Gate::new(&new);
    state.gate.store(gate.map(Arc::new));
    state.config.store(Arc::new(new));
    state.routes.store(Arc::new(routes));
    Ok(report)
}

/// Puts the running value back into `new` for every restart-only setting, naming the changed.
fn keep_restart_only(old: &Config, new: &mut Config, changed: &mut Vec<String>) {
    macro_rules! keep {
        ($($section:ident . $field:ident),*) => {$(
            if old.$section.$field != new.$section.$field {
                changed.push(concat!(stringify!($section), ".", stringify!($field)).to_string());
                new.$section.$field = old.$section.$field.clone();
            }
        )*};
    }
    keep!(
        api.stage,
        limits.max_message_bytes,
        limits.max_frame_bytes,
        limits.max_connections,
        limits.max_pending_handshakes,
        limits.max_batch_bytes,
        limits.write_through_max_recipients,
        limits.send_path,
        limits.connections_per_ip_per_sec
    );
    if old.cluster != new.cluster {
        changed.push("cluster".into());
        new.cluster = old.cluster.clone();
    }
}

/// The live settings that differ between `old` and `new`.
fn applied(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.routes != new.routes {
        out.push("routes".into());
    }
    if old.api != new.api {
        out.push("api".into());
    }
    if old.limits != new.limits {
        out.push("limits".into());
    }
    if old.access_log != new.access_log {
        out.push("log.access".into());
    }
    if old.edge != new.edge {
        out.push("listen.trusted_proxies".into());
    }
    if old.authorizer != new.authorizer {
        out.push("authorizer".into());
    }
    if old.api_keys != new.api_keys {
        out.push("api.keys".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let old = Config::from_toml_str(
            "[routes.\"$default\"]\nintegration = \"mock\"\n[limits]\nmax_connections = 10\n",
        )
        .expect("valid");
        let new = Config::from_toml_str(
            "[routes.chat]\nintegration = \"mock\"\n[limits]\nmax_connections = 20\nidle_timeout_secs = 5\n[api]\nstage = \"dev\"\n",
        )
        .expect("valid");
        let state = crate::test_state(old);
        let report = apply(&state, new).expect("applied");
        assert_eq!(
            report.need_restart,
            vec!["api.stage", "limits.max_connections"]
        );
        assert_eq!(report.applied, vec!["routes", "limits"]);
        let now = state.config();
        assert_eq!(now.limits.max_connections, 10);
        assert_eq!(now.api.stage, "prod");
        assert_eq!(now.limits.idle_timeout_secs, 5);
        assert!(state.routes().has("chat"));
        assert!(!state.routes().has("$default"));
    }
}

//! Assembling a configuration in layers: TOML files, then `GANGWAY_<SECTION>_<KEY>` environment
//! variables, then single keys (command-line flags); only the result is typed and validated.

use super::{Config, ConfigError, ConfigProblem};

/// Sections that `GANGWAY_<SECTION>_<KEY>` environment variables may set: every section of the
/// gateway's file (the data plane's, the control API's `[control]`, the binary's `[listen]` and
/// `[log]`).
const ENV_SECTIONS: &[&str] = &[
    "listen",
    "api",
    "limits",
    "control",
    "cluster",
    "log",
    "authorizer",
];

/// A configuration being assembled from layers (file, environment, flags).
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    table: toml::Table,
    problems: Vec<ConfigProblem>,
}

impl ConfigBuilder {
    /// Starts from an empty table: every key takes its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lays a TOML document over the table; `origin` names it in errors.
    pub fn file(mut self, origin: &str, text: &str) -> Self {
        match text.parse::<toml::Table>() {
            Ok(table) => merge(&mut self.table, table),
            Err(e) => self.problems.push(ConfigProblem {
                key: origin.to_string(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }),
        }
        self
    }

    /// Lays `GANGWAY_<SECTION>_<KEY>` variables over the table. Values are TOML literals when
    /// they parse as one (`42`, `true`, `["a", "b"]`), strings otherwise. `GANGWAY_CONFIG` is
    /// skipped: it names the file. So are variables that do not name a known section
    /// (`GANGWAY_PORT=tcp://…`, `GANGWAY_SERVICE_HOST`: Kubernetes injects these for a Service
    /// called `gangway`) and Kubernetes service-link variables of a Service whose name starts
    /// with a section (`GANGWAY_CONTROL_SERVICE_HOST`, `GANGWAY_CONTROL_PORT_9090_TCP_ADDR`).
    /// A known section with an unknown key stays an error, so typos in keys are caught.
    pub fn env<I: IntoIterator<Item = (String, String)>>(mut self, vars: I) -> Self {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("GANGWAY_") && k != "GANGWAY_CONFIG")
            .collect();
        vars.sort();
        for (name, value) in vars {
            let rest = name["GANGWAY_".len()..].to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            if !ENV_SECTIONS.contains(&section) || is_service_link(key) {
                continue;
            }
            if key.is_empty() {
                self.problems.push(ConfigProblem {
                    key: name.clone(),
                    message: "not a GANGWAY_<SECTION>_<KEY> variable".into(),
                });
                continue;
            }
            self.set(section, key, literal(&value));
        }
        self
    }

    /// Sets one key, as a command-line flag does.
    pub fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        let entry = self
            .table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_string(), value);
        }
    }

    /// The layered table and the problems met while layering it, for a caller that reads
    /// sections of its own besides the data plane's (see [`Config::from_table`]).
    pub fn into_parts(self) -> (toml::Table, Vec<ConfigProblem>) {
        (self.table, self.problems)
    }

    /// Turns the layered table into the data plane's typed, validated [`Config`], or every
    /// problem found. A section the data plane does not read is a problem here.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut problems = self.problems;
        unknown_sections(&self.table, super::SECTIONS, &mut problems);
        let config = Config::from_table(&self.table, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// True for the tail (after `<SERVICE>_`, lower case) of a Kubernetes service-link variable:
/// `service_host`, `service_port`, `service_port_<name>`, `port`, `port_<n>_<proto>` and
/// `port_<n>_<proto>_{addr,port,proto}`. No configuration key has one of these shapes.
fn is_service_link(tail: &str) -> bool {
    if tail == "service_host" || tail == "service_port" || tail.starts_with("service_port_") {
        return true;
    }
    let Some(rest) = tail.strip_prefix("port") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let mut parts = rest.split('_').skip(1);
    let number = parts
        .next()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let proto = parts
        .next()
        .is_some_and(|p| matches!(p, "tcp" | "udp" | "sctp"));
    let field = match parts.next() {
        None => true,
        Some(f) => matches!(f, "addr" | "port" | "proto") && parts.next().is_none(),
    };
    rest.starts_with('_') && number && proto && field
}

/// Parses an environment value as a TOML literal, falling back to a plain string.
fn literal(value: &str) -> toml::Value {
    match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}

/// Deep-merges `over` into `base`: tables merge, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Records a problem for every section of `table` not in `known`.
pub fn unknown_sections(table: &toml::Table, known: &[&str], problems: &mut Vec<ConfigProblem>) {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            problems.push(ConfigProblem {
                key: key.clone(),
                message: "unknown section".into(),
            });
        }
    }
}

//! Reading one TOML table key by key: each bad or unknown key becomes a [`ConfigProblem`] with
//! its dotted name, and reading goes on, so a user sees every problem at once.

use std::net::SocketAddr;

use super::ConfigProblem;

/// Reads the keys of one table, recording a problem for each bad or unknown key.
pub struct Section<'a> {
    table: Option<&'a toml::Table>,
    prefix: String,
    problems: &'a mut Vec<ConfigProblem>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    /// The section `name` of `root` (absent: every key takes its default).
    pub fn new(root: &'a toml::Table, name: &str, problems: &'a mut Vec<ConfigProblem>) -> Self {
        let table = match root.get(name) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(_) => {
                problems.push(ConfigProblem {
                    key: name.into(),
                    message: "must be a table".into(),
                });
                None
            }
        };
        Section {
            table,
            prefix: name.into(),
            problems,
            known: Vec::new(),
        }
    }

    /// A nested table (e.g. one route), its keys reported under `prefix`.
    pub fn from_table(
        table: &'a toml::Table,
        prefix: String,
        problems: &'a mut Vec<ConfigProblem>,
    ) -> Self {
        Section {
            table: Some(table),
            prefix,
            problems,
            known: Vec::new(),
        }
    }

    /// Records a problem about `key` of this section.
    pub fn problem(&mut self, key: &str, message: String) {
        self.problems.push(ConfigProblem {
            key: format!("{}.{key}", self.prefix),
            message,
        });
    }

    /// The raw value of `key`, marking the key known.
    pub fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.known.push(key);
        self.table.and_then(|t| t.get(key))
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            other => {
                self.problem(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn uint(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(toml::Value::Integer(i))
                if *i >= 0 && (*i as u64) >= min && (*i as u64) <= max =>
            {
                *i as u64
            }
            Some(toml::Value::Integer(i)) => {
                self.problem(key, format!("{i} is out of range ({min}..={max})"));
                default
            }
            Some(other) => {
                self.problem(
                    key,
                    format!("expected an integer, found {}", other.type_str()),
                );
                default
            }
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                self.problem(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                );
                default
            }
        }
    }

    /// A socket address (`ip:port`), or `default` when absent.
    pub fn addr(&mut self, key: &'static str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        match self.string(key) {
            None => fallback,
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.problem(key, format!("{s:?} is not an ip:port socket address"));
                    fallback
                }
            },
        }
    }

    /// A list of strings (a TOML array, or one comma-separated string from the environment).
    pub fn string_list(&mut self, key: &'static str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a string, found {}", item.type_str()),
                        ),
                    }
                }
                out
            }
            // A single string (e.g. from an environment variable) is a comma-separated list.
            Some(toml::Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(other) => {
                self.problem(
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    /// Ends reading: every key not asked for is an unknown-key problem.
    pub fn finish(self) {
        if let Some(t) = self.table {
            for key in t.keys() {
                if !self.known.contains(&key.as_str()) {
                    self.problems.push(ConfigProblem {
                        key: format!("{}.{key}", self.prefix),
                        message: format!("unknown key (known: {})", self.known.join(", ")),
                    });
                }
            }
        }
    }
}

//! `[control]`: who may call the control API. Read from the gateway's layered configuration
//! table with the broker's [`Section`] reader, so its problems are reported with the rest.

use gangway_broker::config::{ConfigProblem, Section};

/// `[[control.aws_credentials]]` entry: a SigV4 key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredential {
    /// `access_key_id`.
    pub access_key_id: String,
    /// `secret_access_key`.
    pub secret_access_key: String,
}

/// `[control]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Accepted SigV4 key pairs.
    pub aws_credentials: Vec<AwsCredential>,
    /// How long a control request's body may take to arrive, seconds (then 408).
    pub body_timeout_secs: u64,
    /// `rate_per_credential`: requests per second each credential (token, AWS key, or the
    /// local caller) may make; 0 means no limit. Over it: 429.
    pub rate_per_credential: u32,
    /// `burst_per_credential`: that bucket's burst (0: the rate).
    pub burst_per_credential: u32,
}

impl Default for ControlConfig {
    /// No credentials (local callers only), 30 s body timeout.
    fn default() -> Self {
        let mut problems = Vec::new();
        let config = ControlConfig::read(&toml::Table::new(), &mut problems);
        debug_assert!(problems.is_empty());
        config
    }
}

/// Shortest accepted bearer token.
pub const MIN_TOKEN_BYTES: usize = 8;

impl ControlConfig {
    /// True when the control API checks credentials at all.
    pub fn requires_auth(&self) -> bool {
        !self.tokens.is_empty() || !self.aws_credentials.is_empty()
    }

    /// Reads `[control]` of the gateway's layered table, recording every problem.
    pub fn read(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> ControlConfig {
        let mut r = Section::new(table, "control", problems);
        let tokens = r.string_list("tokens");
        let aws_credentials = credentials(&mut r, "aws_credentials");
        let body_timeout_secs = r.uint("body_timeout_secs", 30, 1, 3_600);
        let rate_per_credential = r.uint("rate_per_credential", 0, 0, 1 << 24) as u32;
        let burst_per_credential = r.uint("burst_per_credential", 0, 0, 1 << 24) as u32;
        r.finish();
        for (i, t) in tokens.iter().enumerate() {
            if t.len() < MIN_TOKEN_BYTES {
                problems.push(ConfigProblem {
                    key: format!("control.tokens[{i}]"),
                    message: format!("a token must be at least {MIN_TOKEN_BYTES} characters"),
                });
            }
        }
        ControlConfig {
            tokens,
            aws_credentials,
            body_timeout_secs,
            rate_per_credential,
            burst_per_credential,
        }
    }
}

/// `[[control.aws_credentials]]`: tables of non-empty `access_key_id` and `secret_access_key`.
fn credentials(r: &mut Section<'_>, key: &'static str) -> Vec<AwsCredential> {
    let Some(value) = r.get(key) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        r.problem(key, "expected [[control.aws_credentials]] tables".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = item.get("access_key_id").and_then(|v| v.as_str());
        let secret = item.get("secret_access_key").and_then(|v| v.as_str());
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                out.push(AwsCredential {
                    access_key_id: id.into(),
                    secret_access_key: secret.into(),
                })
            }
            _ => r.problem(
                &format!("{key}[{i}]"),
                "needs non-empty string access_key_id and secret_access_key".into(),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (ControlConfig, Vec<ConfigProblem>) {
        let table: toml::Table = text.parse().expect("toml");
        let mut problems = Vec::new();
        (ControlConfig::read(&table, &mut problems), problems)
    }

    #[test]
    fn credentials_and_tokens_are_read() {
        let (c, problems) = read(
            "[control]\ntokens = [\"a-long-token\"]\n[[control.aws_credentials]]\naccess_key_id = \"AKID\"\nsecret_access_key = \"secret\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.tokens, vec!["a-long-token"]);
        assert_eq!(c.aws_credentials[0].access_key_id, "AKID");
        assert!(c.requires_auth());
        assert!(!ControlConfig::default().requires_auth());
    }

    #[test]
    fn bad_entries_are_problems_with_their_keys() {
        let (_, problems) = read(
            "[control]\ntokens = [\"short\"]\nnope = 1\n[[control.aws_credentials]]\naccess_key_id = \"\"\n",
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "control.tokens[0]",
            "control.nope",
            "control.aws_credentials[0]",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }
}

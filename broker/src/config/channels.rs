//! `[[channels]]`: per-channel rules — history, the JSON envelope, presence. A channel no rule
//! matches behaves as it always did: raw payloads, no offsets, nothing kept.
//!
//! A rule's `pattern` is a channel name (`room:42`) or a prefix ending in `*` (`news:*`). An
//! exact pattern wins over every prefix; among prefixes the longest wins (so `news:eu:*` can
//! refine `news:*`).

use std::time::Duration;

use super::reader::Section;
use super::ConfigProblem;

/// Longest channel name, bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 128;

/// Most messages one channel's history may keep (`history_size`).
pub const MAX_HISTORY_SIZE: u64 = 100_000;

/// Checks a channel name: 1–128 characters of `A-Z a-z 0-9 - _ . : @ = +`.
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(format!(
            "channel names are 1 to {MAX_CHANNEL_NAME_BYTES} characters long"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '=' | '+'))
    }) {
        return Err(format!(
            "channel name {name:?} has {c:?}: use A-Z, a-z, 0-9 and - _ . : @ = +"
        ));
    }
    Ok(())
}

/// What subscribers of a channel receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// `"none"`: the published bytes as they are (the default).
    #[default]
    None,
    /// `"json"`: `{"channel", "offset", "epoch", "data"}` (see README, "History, recovery and presence").
    Json,
}

/// Which channels a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPattern {
    /// One channel.
    Exact(String),
    /// Every channel whose name starts with this (the pattern without its `*`).
    Prefix(String),
}

impl ChannelPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            ChannelPattern::Exact(n) => n == name,
            ChannelPattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// One `[[channels]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    /// `pattern`: the channels it covers.
    pub pattern: ChannelPattern,
    /// `history_size`: messages kept per channel for recovery and the history API (0: none).
    pub history_size: usize,
    /// `history_ttl_secs`: how long a kept message stays (default 300).
    pub history_ttl: Duration,
    /// `envelope`: what subscribers receive.
    pub envelope: Envelope,
    /// `presence`: the channel's subscribers can be listed (`GET /@channels/{c}/presence`,
    /// `…/presence-stats`).
    pub presence: bool,
    /// `join_leave`: subscribers are told when others join and leave.
    pub join_leave: bool,
}

impl ChannelRule {
    /// True when publishes get offsets and are kept.
    pub fn keeps_history(&self) -> bool {
        self.history_size > 0
    }
}

/// The rules, in the order the file gave them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelRules {
    rules: Vec<ChannelRule>,
}

impl ChannelRules {
    /// The rule for channel `name`, if any (see the module documentation for precedence).
    pub fn get(&self, name: &str) -> Option<&ChannelRule> {
        let mut best: Option<&ChannelRule> = None;
        for rule in self.rules.iter().filter(|r| r.pattern.matches(name)) {
            match (&rule.pattern, best.map(|b| &b.pattern)) {
                (ChannelPattern::Exact(_), _) => return Some(rule),
                (ChannelPattern::Prefix(p), Some(ChannelPattern::Prefix(q)))
                    if p.len() <= q.len() => {}
                _ => best = Some(rule),
            }
        }
        best
    }

    /// True when no channel has a rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &ChannelRule> {
        self.rules.iter()
    }
}

/// Reads `[[channels]]`, recording every problem.
pub(super) fn read(value: Option<&toml::Value>, problems: &mut Vec<ConfigProblem>) -> ChannelRules {
    let Some(value) = value else {
        return ChannelRules::default();
    };
    let Some(items) = value.as_array() else {
        problems.push(ConfigProblem {
            key: "channels".into(),
            message: "expected [[channels]] tables".into(),
        });
        return ChannelRules::default();
    };
    let mut rules: Vec<ChannelRule> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("channels[{i}]");
        let Some(table) = item.as_table() else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "expected a table".into(),
            });
            continue;
        };
        let mut r = Section::from_table(table, prefix.clone(), problems);
        let pattern = match r.string("pattern") {
            None => {
                r.problem(
                    "pattern",
                    "required: a channel name or a prefix ending in *".into(),
                );
                None
            }
            Some(p) => match parse_pattern(&p) {
                Ok(p) => Some(p),
                Err(e) => {
                    r.problem("pattern", e);
                    None
                }
            },
        };
        let history_size = r.uint("history_size", 0, 0, MAX_HISTORY_SIZE) as usize;
        let history_ttl = Duration::from_secs(r.uint("history_ttl_secs", 300, 1, 30 * 86_400));
        let envelope = match r.string("envelope").as_deref() {
            None | Some("none") => Envelope::None,
            Some("json") => Envelope::Json,
            Some(other) => {
                r.problem(
                    "envelope",
                    format!("must be \"none\" or \"json\", not {other:?}"),
                );
                Envelope::None
            }
        };
        let presence = r.bool("presence", false);
        let join_leave = r.bool("join_leave", false);
        r.finish();
        let Some(pattern) = pattern else { continue };
        if rules.iter().any(|x| x.pattern == pattern) {
            problems.push(ConfigProblem {
                key: format!("{prefix}.pattern"),
                message: "another [[channels]] rule has the same pattern".into(),
            });
            continue;
        }
        rules.push(ChannelRule {
            pattern,
            history_size,
            history_ttl,
            envelope,
            presence,
            join_leave,
        });
    }
    ChannelRules { rules }
}

fn parse_pattern(p: &str) -> Result<ChannelPattern, String> {
    match p.strip_suffix('*') {
        // `*` alone: every channel.
        Some("") => Ok(ChannelPattern::Prefix(String::new())),
        Some(prefix) => {
            validate_channel_name(prefix)?;
            Ok(ChannelPattern::Prefix(prefix.to_string()))
        }
        None => {
            validate_channel_name(p)?;
            Ok(ChannelPattern::Exact(p.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let c = Config::from_toml_str(
            r#"
[[channels]]
pattern = "news:*"
history_size = 10
[[channels]]
pattern = "news:eu:*"
history_size = 20
envelope = "json"
[[channels]]
pattern = "news:eu:fr"
history_size = 30
history_ttl_secs = 60
"#,
        )
        .expect("valid");
        let size = |n: &str| c.channels.get(n).map(|r| r.history_size);
        assert_eq!(size("news:us"), Some(10));
        assert_eq!(size("news:eu:de"), Some(20));
        assert_eq!(size("news:eu:fr"), Some(30));
        assert_eq!(size("other"), None);
        assert_eq!(
            c.channels
                .get("news:eu:fr")
                .map(|r| r.history_ttl.as_secs()),
            Some(60)
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let err = Config::from_toml_str(
            r#"
[[channels]]
history_size = 10
[[channels]]
pattern = "bad name*"
[[channels]]
pattern = "a"
envelope = "xml"
history_size = 1000000
[[channels]]
pattern = "a"
bogus = 1
"#,
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "channels[0].pattern",
            "channels[1].pattern",
            "channels[2].envelope",
            "channels[2].history_size",
            "channels[3].bogus",
            "channels[3].pattern",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }
}

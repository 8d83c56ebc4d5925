//! Control-API paths, parsed from the raw (still percent-encoded) request path.
//!
//! Parsing by hand keeps the AWS details exact: `@` may arrive as `%40`, and a connection id's
//! `/` or `=` arrive encoded (`%2F`, `%3D`), so the path is split on raw `/` before decoding.
//! Every `@…` path works with and without the `/{stage}` prefix.

use percent_encoding::percent_decode_str;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPath {
    /// `/healthz`.
    Health,
    /// `/readyz`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// `/openapi.json`.
    OpenApi,
    /// `@connections`: the listing.
    Connections,
    /// `@connections/{id}` with the decoded id.
    Connection(String),
    /// `@connections/{id}/channels/{channel}`.
    ConnectionChannel(String, String),
    /// `@channels/{channel}`.
    Channel(String),
    /// `@channels/{channel}/history`.
    ChannelHistory(String),
    /// `@channels/{channel}/presence`.
    ChannelPresence(String),
    /// `@channels/{channel}/presence-stats`.
    ChannelPresenceStats(String),
    /// `@broadcast`.
    Broadcast,
    /// `@batch`.
    Batch,
    /// `@node`: this node's cluster membership (the peer check).
    Node,
    /// `@admin/reload`.
    AdminReload,
    /// A path under a stage other than the configured one (AWS answers 403).
    WrongStage,
    /// A segment that is not valid percent-encoded UTF-8, or empty.
    BadSegment(&'static str),
    /// Anything else.
    Unknown,
}

/// Parses `raw_path` for a node whose stage is `stage`.
pub fn parse(raw_path: &str, stage: &str) -> ControlPath {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let segments: Vec<&str> = trimmed.split('/').collect();
    match segments.as_slice() {
        ["healthz"] => return ControlPath::Health,
        ["readyz"] => return ControlPath::Ready,
        ["metrics"] => return ControlPath::Metrics,
        ["openapi.json"] => return ControlPath::OpenApi,
        _ => {}
    }
    match segments.split_first() {
        Some((first, rest)) if !is_at(first) && !rest.is_empty() => match at_path(rest) {
            ControlPath::Unknown => ControlPath::Unknown,
            _ if decode(first).as_deref() != Some(stage) => ControlPath::WrongStage,
            known => known,
        },
        _ => at_path(&segments),
    }
}

/// The `@…` part of a path.
fn at_path(rest: &[&str]) -> ControlPath {
    match rest {
        [c] if at(c, "connections") => ControlPath::Connections,
        [c, id] if at(c, "connections") => match decode(id) {
            Some(id) => ControlPath::Connection(id),
            None => ControlPath::BadSegment("connectionId"),
        },
        [c, id, ch, name] if at(c, "connections") && *ch == "channels" => {
            match (decode(id), decode(name)) {
                (Some(id), Some(name)) => ControlPath::ConnectionChannel(id, name),
                (None, _) => ControlPath::BadSegment("connectionId"),
                (_, None) => ControlPath::BadSegment("channel"),
            }
        }
        [c, name] if at(c, "channels") => match decode(name) {
            Some(name) => ControlPath::Channel(name),
            None => ControlPath::BadSegment("channel"),
        },
        [c, name, what] if at(c, "channels") => match (decode(name), *what) {
            (None, _) => ControlPath::BadSegment("channel"),
            (Some(name), "history") => ControlPath::ChannelHistory(name),
            (Some(name), "presence") => ControlPath::ChannelPresence(name),
            (Some(name), "presence-stats") => ControlPath::ChannelPresenceStats(name),
            _ => ControlPath::Unknown,
        },
        [b] if at(b, "broadcast") => ControlPath::Broadcast,
        [b] if at(b, "batch") => ControlPath::Batch,
        [n] if at(n, "node") => ControlPath::Node,
        [a, r] if at(a, "admin") && *r == "reload" => ControlPath::AdminReload,
        _ => ControlPath::Unknown,
    }
}

fn is_at(segment: &str) -> bool {
    segment.starts_with('@')
        || segment
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("%40"))
}

/// `@name` or `%40name`.
fn at(segment: &str, name: &str) -> bool {
    if let Some(rest) = segment.strip_prefix('@') {
        return rest == name;
    }
    segment.len() == name.len() + 3
        && segment
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("%40"))
        && segment.get(3..) == Some(name)
}

fn decode(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_aws_path_forms() {
        let id = ControlPath::Connection("L0SM9cOFvHcCIhw=+/a b".into());
        for p in [
            "/prod/@connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
            "/prod/%40connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
            "/@connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
            "/%40connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
        ] {
            assert_eq!(parse(p, "prod"), id, "{p}");
        }
    }

    #[test]
    fn fan_out_paths() {
        assert_eq!(
            parse("/prod/@connections/abc/channels/room%3A1", "prod"),
            ControlPath::ConnectionChannel("abc".into(), "room:1".into())
        );
        assert_eq!(
            parse("/@channels/news", "prod"),
            ControlPath::Channel("news".into())
        );
        assert_eq!(
            parse("/prod/%40channels/news", "prod"),
            ControlPath::Channel("news".into())
        );
        assert_eq!(parse("/@broadcast", "prod"), ControlPath::Broadcast);
        assert_eq!(parse("/prod/@batch", "prod"), ControlPath::Batch);
    }

    #[test]
    fn other_paths() {
        assert_eq!(parse("/healthz", "prod"), ControlPath::Health);
        assert_eq!(parse("/readyz", "prod"), ControlPath::Ready);
        assert_eq!(parse("/metrics", "prod"), ControlPath::Metrics);
        assert_eq!(parse("/openapi.json", "prod"), ControlPath::OpenApi);
        assert_eq!(
            parse("/dev/@connections/x", "prod"),
            ControlPath::WrongStage
        );
        assert_eq!(
            parse("/@connections/", "prod"),
            ControlPath::BadSegment("connectionId")
        );
        assert_eq!(
            parse("/@connections/%FF", "prod"),
            ControlPath::BadSegment("connectionId")
        );
        assert_eq!(parse("/nope", "prod"), ControlPath::Unknown);
        assert_eq!(
            parse("/prod/@connections/a/b", "prod"),
            ControlPath::Unknown
        );
        assert_eq!(parse("/prod/@connectionsx/a", "prod"), ControlPath::Unknown);
        // Found by fuzzing: a multi-byte character where "%40" would end.
        assert_eq!(
            parse("/%1/%4\u{41c}onnections/abc/channels/room", "prod"),
            ControlPath::Unknown
        );
    }
}

//! Control-API paths, parsed from the raw (still percent-encoded) request path.
//!
//! Parsing by hand keeps the AWS details exact: `@` may arrive as `%40`, and a connection id's
//! `/` or `=` arrive encoded (`%2F`, `%3D`), so the path is split on raw `/` before decoding.

use percent_encoding::percent_decode_str;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPath {
    /// `/healthz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// `[/{stage}]/@connections/{id}` with the decoded id.
    Connection(String),
    /// A path under a stage other than the configured one.
    WrongStage,
    /// `@connections/{id}` with an id that is not valid percent-encoded UTF-8.
    BadId,
    /// Anything else.
    Unknown,
}

/// Parses `raw_path` for a node whose stage is `stage`.
pub fn parse(raw_path: &str, stage: &str) -> ControlPath {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let segments: Vec<&str> = trimmed.split('/').collect();
    match segments.as_slice() {
        ["healthz"] => ControlPath::Health,
        ["metrics"] => ControlPath::Metrics,
        [c, id] if is_connections(c) => connection(id),
        [s, c, id] if is_connections(c) => {
            if decode(s).as_deref() == Some(stage) {
                connection(id)
            } else {
                ControlPath::WrongStage
            }
        }
        _ => ControlPath::Unknown,
    }
}

fn is_connections(segment: &str) -> bool {
    segment == "@connections" || segment.eq_ignore_ascii_case("%40connections")
}

fn decode(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn connection(raw_id: &str) -> ControlPath {
    match decode(raw_id) {
        Some(id) if !id.is_empty() => ControlPath::Connection(id),
        _ => ControlPath::BadId,
    }
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
    fn other_paths() {
        assert_eq!(parse("/healthz", "prod"), ControlPath::Health);
        assert_eq!(parse("/metrics", "prod"), ControlPath::Metrics);
        assert_eq!(
            parse("/dev/@connections/x", "prod"),
            ControlPath::WrongStage
        );
        assert_eq!(parse("/@connections/", "prod"), ControlPath::BadId);
        assert_eq!(parse("/@connections/%FF", "prod"), ControlPath::BadId);
        assert_eq!(parse("/nope", "prod"), ControlPath::Unknown);
        assert_eq!(
            parse("/prod/@connections/a/b", "prod"),
            ControlPath::Unknown
        );
    }
}

//! Route selection: AWS's `route_selection_expression`, evaluated against a message.
//!
//! Sans-IO and allocation-light: an expression is parsed once at start into segments; a
//! message is scanned once per variable, keeping only the selected value. Rules (AWS): `$request.body.<path>` or
//! `${request.body.<path>}`, several variables mixed with static text, `\$` escapes a dollar,
//! non-string values are stringified, a missing path is `""`. Non-JSON and binary messages, and
//! keys that match no route, go to `$default`.

use std::fmt::Write as _;

/// One piece of a parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(String),
    /// A path into the body: field names and array indices.
    Body(Vec<PathStep>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Field(String),
    Index(usize),
}

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// A `${` without its `}`.
    #[error("unclosed ${{ at byte {0}")]
    Unclosed(usize),
    /// A variable other than `request.body…`.
    #[error("unsupported variable {0:?}: WebSocket route selection reads only $request.body")]
    UnsupportedVariable(String),
    /// A path that cannot be parsed.
    #[error("malformed path in variable {0:?}")]
    MalformedPath(String),
}

/// A parsed route selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionExpression {
    segments: Vec<Segment>,
}

impl Default for SelectionExpression {
    fn default() -> Self {
        SelectionExpression::parse("$request.body.action").unwrap_or(SelectionExpression {
            segments: Vec::new(),
        })
    }
}

impl SelectionExpression {
    /// Parses an expression such as `$request.body.action` or `${request.body.a}-v1`.
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        let bytes = text.as_bytes();
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'\\' && bytes.get(i + 1) == Some(&b'$') {
                literal.push('$');
                i += 2;
            } else if c == b'$' && bytes.get(i + 1) == Some(&b'{') {
                let close = text[i + 2..]
                    .find('}')
                    .ok_or(ExpressionError::Unclosed(i))?;
                let var = &text[i + 2..i + 2 + close];
                flush(&mut literal, &mut segments);
                segments.push(Segment::Body(parse_variable(var)?));
                i += 2 + close + 1;
            } else if c == b'$'
                && bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || matches!(bytes[end], b'_' | b'.' | b'[' | b']'))
                {
                    end += 1;
                }
                // A trailing '.' belongs to the static text that follows.
                while end > start && bytes[end - 1] == b'.' {
                    end -= 1;
                }
                flush(&mut literal, &mut segments);
                segments.push(Segment::Body(parse_variable(&text[start..end])?));
                i = end;
            } else {
                let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                literal.push(ch);
                i += ch.len_utf8();
            }
        }
        flush(&mut literal, &mut segments);
        Ok(SelectionExpression { segments })
    }

    /// Evaluates the expression for a text message. `None` means the message is not JSON,
    /// which routes to `$default`.
    ///
    /// No tree of the message is built: each variable's path is followed by one streaming pass
    /// that skips (while validating) everything off the path and keeps only the selected value,
    /// so a large message costs a scan, not an allocation per node (BENCHMARKS.md).
    pub fn evaluate(&self, message: &str) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Static(s) => out.push_str(s),
                Segment::Body(path) => {
                    if let Some(v) = select(message, path)? {
                        stringify(&v, &mut out);
                    }
                }
            }
        }
        Some(out)
    }
}

/// Follows `path` through the JSON text `message`: `None` when it is not JSON, `Some(None)`
/// when the path leads nowhere. Duplicate keys resolve to the last, as in a parsed object.
fn select(message: &str, path: &[PathStep]) -> Option<Option<serde_json::Value>> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_str(message);
    let found = PathSeed(path).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(found)
}

/// Deserializes the value at a path below the current one, skipping the rest.
struct PathSeed<'p>(&'p [PathStep]);

impl<'de> serde::de::DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0.first() {
            None => serde::Deserialize::deserialize(d).map(Some),
            Some(_) => d.deserialize_any(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for PathSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let (field, rest) = match self.0.split_first() {
            Some((PathStep::Field(f), rest)) => (Some(f.as_str()), rest),
            _ => (None, &[][..]),
        };
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(field))? {
            if hit {
                found = map.next_value_seed(PathSeed(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let (index, rest) = match self.0.split_first() {
            Some((PathStep::Index(n), rest)) => (Some(*n), rest),
            _ => (None, &[][..]),
        };
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(PathSeed(rest))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i = i.saturating_add(1);
        }
        Ok(found)
    }

    // Scalars end the path: what it asks for is not there.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads an object key and says whether it is `Some(name)`, without allocating it.
struct KeyIs<'n>(Option<&'n str>);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(self.0 == Some(key))
    }
}

fn flush(literal: &mut String, segments: &mut Vec<Segment>) {
    if !literal.is_empty() {
        segments.push(Segment::Static(std::mem::take(literal)));
    }
}

fn parse_variable(var: &str) -> Result<Vec<PathStep>, ExpressionError> {
    let rest = if var == "request.body" {
        ""
    } else if let Some(rest) = var.strip_prefix("request.body") {
        if !(rest.starts_with('.') || rest.starts_with('[')) {
            return Err(ExpressionError::UnsupportedVariable(var.into()));
        }
        rest
    } else {
        return Err(ExpressionError::UnsupportedVariable(var.into()));
    };
    let mut steps = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                if end == start {
                    return Err(ExpressionError::MalformedPath(var.into()));
                }
                steps.push(PathStep::Field(rest[start..end].to_string()));
                i = end;
            }
            b'[' => {
                let close = rest[i..]
                    .find(']')
                    .ok_or_else(|| ExpressionError::MalformedPath(var.into()))?;
                let inner = rest[i + 1..i + close].trim();
                let step = if let Ok(n) = inner.parse::<usize>() {
                    PathStep::Index(n)
                } else if inner.len() >= 2
                    && ((inner.starts_with('\'') && inner.ends_with('\''))
                        || (inner.starts_with('"') && inner.ends_with('"')))
                {
                    PathStep::Field(inner[1..inner.len() - 1].to_string())
                } else {
                    return Err(ExpressionError::MalformedPath(var.into()));
                };
                steps.push(step);
                i += close + 1;
            }
            _ => return Err(ExpressionError::MalformedPath(var.into())),
        }
    }
    Ok(steps)
}

/// AWS stringifies non-string results; arrays read `[item1, item2]`.
fn stringify(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                stringify(item, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The route a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChoice {
    /// A configured route key (a custom key or `$default`).
    Route(String),
    /// No match and no `$default`: the client gets AWS's Forbidden frame.
    Forbidden,
}

/// Chooses the route for one message, given which route keys exist.
///
/// `text` is `None` for binary messages, which go to `$default`.
pub fn select_route(
    expression: &SelectionExpression,
    text: Option<&str>,
    has_route: impl Fn(&str) -> bool,
) -> RouteChoice {
    let evaluated = text.and_then(|t| expression.evaluate(t));
    if let Some(key) = evaluated {
        let custom = !key.starts_with('$') && !key.is_empty();
        if (custom || key == "$default") && has_route(&key) {
            return RouteChoice::Route(key);
        }
    }
    if has_route("$default") {
        RouteChoice::Route("$default".into())
    } else {
        RouteChoice::Forbidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"service":"chat","action":"join","data":{"room":"room1234"}}"#;

    fn eval(expr: &str, body: &str) -> Option<String> {
        SelectionExpression::parse(expr)
            .expect("parse")
            .evaluate(body)
    }

    #[test]
    fn aws_documentation_examples() {
        assert_eq!(eval("$request.body.action", DOC).as_deref(), Some("join"));
        assert_eq!(eval("${request.body.action}", DOC).as_deref(), Some("join"));
        assert_eq!(
            eval("${request.body.service}/${request.body.action}", DOC).as_deref(),
            Some("chat/join")
        );
        assert_eq!(
            eval("${request.body.action}-${request.body.invalidPath}", DOC).as_deref(),
            Some("join-")
        );
        assert_eq!(eval("action", DOC).as_deref(), Some("action"));
        assert_eq!(eval("\\$default", DOC).as_deref(), Some("$default"));
    }

    #[test]
    fn nested_paths_indices_and_stringification() {
        assert_eq!(
            eval("$request.body.data.room", DOC).as_deref(),
            Some("room1234")
        );
        let body = r#"{"n":42,"b":true,"z":null,"a":["x",1,["y"]],"o":{"k":1},"d":1.5}"#;
        assert_eq!(eval("$request.body.n", body).as_deref(), Some("42"));
        assert_eq!(eval("$request.body.b", body).as_deref(), Some("true"));
        assert_eq!(eval("$request.body.z", body).as_deref(), Some("null"));
        assert_eq!(
            eval("$request.body.a", body).as_deref(),
            Some("[x, 1, [y]]")
        );
        assert_eq!(eval("$request.body.a[0]", body).as_deref(), Some("x"));
        assert_eq!(eval("${request.body['n']}", body).as_deref(), Some("42"));
        assert_eq!(eval("$request.body.o", body).as_deref(), Some(r#"{"k":1}"#));
        assert_eq!(eval("$request.body.d", body).as_deref(), Some("1.5"));
        assert_eq!(
            eval("$request.body.missing.deeper", body).as_deref(),
            Some("")
        );
        assert_eq!(eval("v$request.body.n.", body).as_deref(), Some("v42."));
    }

    #[test]
    fn duplicate_keys_take_the_last_and_everything_is_validated() {
        assert_eq!(
            eval("$request.body.a", r#"{"a":"x","a":"y"}"#).as_deref(),
            Some("y")
        );
        assert_eq!(
            eval("$request.body.a", r#"{"a\u0062":"x","ab":"y","a":"z"}"#).as_deref(),
            Some("z")
        );
        // Broken JSON after the selected value still means "not JSON".
        assert_eq!(eval("$request.body.a", r#"{"a":"x", broken"#), None);
        assert_eq!(eval("$request.body.a", r#"{"a":"x"} trailing"#), None);
        assert_eq!(
            eval("$request.body.a[1]", r#"{"a":[1,[2,3],4]}"#).as_deref(),
            Some("[2, 3]")
        );
        assert_eq!(
            eval("$request.body.a[9]", r#"{"a":[1]}"#).as_deref(),
            Some("")
        );
        assert_eq!(
            eval("$request.body.a.b", r#"{"a":[1]}"#).as_deref(),
            Some("")
        );
        assert_eq!(eval("$request.body.a", "42").as_deref(), Some(""));
        // Skipped values are walked without recursion; a selected value deeper than serde_json's
        // recursion limit is not JSON to the router.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(eval("$request.body.a", &deep).as_deref(), Some(""));
        let deep_value = format!(r#"{{"a":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(eval("$request.body.a", &deep_value), None);
    }

    #[test]
    fn non_json_is_not_evaluated() {
        assert_eq!(eval("$request.body.action", "hello"), None);
        assert_eq!(eval("$request.body.action", "{broken"), None);
        // A static expression needs no JSON at all.
        assert_eq!(eval("static", "hello").as_deref(), Some("static"));
    }

    #[test]
    fn bad_expressions_are_rejected() {
        assert!(matches!(
            SelectionExpression::parse("${request.body.a"),
            Err(ExpressionError::Unclosed(_))
        ));
        assert!(matches!(
            SelectionExpression::parse("$context.routeKey"),
            Err(ExpressionError::UnsupportedVariable(_))
        ));
        assert!(matches!(
            SelectionExpression::parse("${request.body..a}"),
            Err(ExpressionError::MalformedPath(_))
        ));
    }

    #[test]
    fn selection_falls_back_to_default_then_forbidden() {
        let e = SelectionExpression::parse("$request.body.action").expect("parse");
        let routes = ["join", "$default"];
        let has = |k: &str| routes.contains(&k);
        assert_eq!(
            select_route(&e, Some(DOC), has),
            RouteChoice::Route("join".into())
        );
        assert_eq!(
            select_route(&e, Some(r#"{"action":"nope"}"#), has),
            RouteChoice::Route("$default".into())
        );
        assert_eq!(
            select_route(&e, Some("not json"), has),
            RouteChoice::Route("$default".into())
        );
        assert_eq!(
            select_route(&e, None, has),
            RouteChoice::Route("$default".into())
        );
        // A message cannot select $connect or $disconnect.
        assert_eq!(
            select_route(&e, Some(r#"{"action":"$connect"}"#), |k| k == "$connect"),
            RouteChoice::Forbidden
        );
        let none = |k: &str| k == "join";
        assert_eq!(select_route(&e, Some("x"), none), RouteChoice::Forbidden);
    }
}

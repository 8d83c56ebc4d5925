//! Route selection: AWS's `route_selection_expression`, evaluated against a message.
//!
//! Sans-IO and allocation-light: an expression is parsed once at start into segments; each
//! message is parsed as JSON at most once. Rules (AWS): `$request.body.<path>` or
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
    needs_body: bool,
}

impl Default for SelectionExpression {
    fn default() -> Self {
        SelectionExpression::parse("$request.body.action").unwrap_or(SelectionExpression {
            segments: Vec::new(),
            needs_body: false,
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
        let needs_body = segments.iter().any(|s| matches!(s, Segment::Body(_)));
        Ok(SelectionExpression {
            segments,
            needs_body,
        })
    }

    /// Evaluates the expression for a text message. `None` means the message is not JSON (or
    /// not an object/array/value that can be read), which routes to `$default`.
    pub fn evaluate(&self, message: &str) -> Option<String> {
        if !self.needs_body {
            return Some(self.render(&serde_json::Value::Null));
        }
        let body: serde_json::Value = serde_json::from_str(message).ok()?;
        Some(self.render(&body))
    }

    fn render(&self, body: &serde_json::Value) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Static(s) => out.push_str(s),
                Segment::Body(path) => {
                    if let Some(v) = lookup(body, path) {
                        stringify(v, &mut out);
                    }
                }
            }
        }
        out
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

fn lookup<'a>(body: &'a serde_json::Value, path: &[PathStep]) -> Option<&'a serde_json::Value> {
    let mut v = body;
    for step in path {
        v = match step {
            PathStep::Field(f) => v.as_object()?.get(f)?,
            PathStep::Index(n) => v.as_array()?.get(*n)?,
        };
    }
    Some(v)
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

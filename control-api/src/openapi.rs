//! The OpenAPI 3 document of the control API, generated from [`crate::routes::ROUTES`] so that
//! every route the server answers is in it.

use serde_json::{json, Map, Value};

use crate::routes::{all_routes, Op};

/// The document, as served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, route) in all_routes() {
        let entry = paths
            .entry(path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let mut operation = json!({
            "operationId": if path.starts_with("/{stage}") {
                format!("{}WithStage", route.op.name())
            } else {
                route.op.name().to_string()
            },
            "summary": route.summary,
            "parameters": parameters(&path, route.op),
            "responses": responses(route.op),
        });
        if let Some(body) = request_body(route.op) {
            operation["requestBody"] = body;
        }
        if route.op.is_public() {
            operation["security"] = json!([]);
        }
        if let Value::Object(m) = entry {
            m.insert(method.to_ascii_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Gangway control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "AWS API Gateway-compatible @connections API, plus channels, broadcast and batch. \
                Errors carry an x-amzn-ErrorType header and a JSON body {\"message\": ...}; every response \
                carries x-amzn-RequestId."
        },
        "paths": paths,
        "security": [{"bearer": []}, {"sigv4": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "[control] tokens"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                    "description": "AWS Signature Version 4, service execute-api, keys from [[control.aws_credentials]]"}
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
                "Connection": {"type": "object", "properties": {
                    "connectedAt": {"type": "string", "format": "date-time"},
                    "identity": {"type": "object", "properties": {
                        "sourceIp": {"type": "string"}, "userAgent": {"type": "string"}}},
                    "lastActiveAt": {"type": "string", "format": "date-time"},
                    "authorizer": {"type": "object", "description": "requestContext.authorizer of its events, when it has one (Gangway's addition)"}}},
                "ConnectionPage": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "connectionId": {"type": "string"},
                        "connectedAt": {"type": "string", "format": "date-time"},
                        "identity": {"type": "object", "properties": {
                            "sourceIp": {"type": "string"}, "userAgent": {"type": "string"}}},
                        "lastActiveAt": {"type": "string", "format": "date-time"},
                        "channels": {"type": "array", "items": {"type": "string"}}}}},
                    "nextCursor": {"type": "string", "description": "absent on the last page"}},
                    "required": ["items"]},
                "Recipients": {"type": "object", "properties": {"recipients": {"type": "integer"},
                    "offset": {"type": "integer", "description": "the message's offset (channels with history)"},
                    "epoch": {"type": "string", "description": "the channel's epoch (channels with history)"},
                    "cluster": {"type": "string", "enum": ["unavailable"]}}},
                "History": {"type": "object", "properties": {
                    "epoch": {"type": "string"},
                    "offset": {"type": "integer", "description": "the channel's newest offset"},
                    "oldest": {"type": "integer", "description": "the oldest offset still kept"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "offset": {"type": "integer"},
                        "publishedAt": {"type": "string", "format": "date-time"},
                        "data": {"type": "string"},
                        "binary": {"type": "boolean", "description": "data is base64"}}}},
                    "next": {"type": "integer", "description": "since of the next page; absent on the last"}},
                    "required": ["epoch", "offset", "oldest", "items"]},
                "Subscribers": {"type": "object", "properties": {"subscribers": {"type": "integer"}}},
                "BatchItem": {"type": "object", "properties": {
                    "connectionId": {"type": "string", "description": "push to this connection (or give channel)"},
                    "channel": {"type": "string", "description": "publish to this channel (or give connectionId)"},
                    "data": {"description": "a string (sent as is), or any other JSON value (sent as its JSON text)"},
                    "base64": {"type": "boolean", "description": "data is base64 of the bytes to send"},
                    "exclude": {"type": "string", "description": "channel items: a connection id to skip"}},
                    "required": ["data"]},
                "BatchResult": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "recipients": {"type": "integer"},
                    "offset": {"type": "integer"}, "epoch": {"type": "string"},
                    "error": {"type": "string"}, "message": {"type": "string"}}, "required": ["status"]}
            }
        }
    })
}

fn parameters(path: &str, op: Op) -> Value {
    let mut params = Vec::new();
    for name in ["stage", "connectionId", "channel"] {
        if path.contains(&format!("{{{name}}}")) {
            params.push(
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
    }
    match op {
        Op::DeleteConnection => {
            params.push(json!({"name": "code", "in": "query", "required": false,
                "description": "close code: 1000 or 3000-4999 (default 1000)",
                "schema": {"type": "integer"}}));
            params.push(json!({"name": "reason", "in": "query", "required": false,
                "description": "close reason, at most 123 bytes", "schema": {"type": "string"}}));
        }
        Op::ListConnections | Op::GetPresence => {
            params.push(json!({"name": "limit", "in": "query", "required": false,
                "description": "connections per page, 1-1000 (default 100)",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}));
            params.push(json!({"name": "cursor", "in": "query", "required": false,
                "description": "the nextCursor of the previous page", "schema": {"type": "string"}}));
        }
        Op::GetHistory => {
            params.push(json!({"name": "since", "in": "query", "required": false,
                "description": "answer the messages after this offset (default 0: all kept)",
                "schema": {"type": "integer", "minimum": 0}}));
            params.push(json!({"name": "limit", "in": "query", "required": false,
                "description": "messages per page, 1-1000 (default 100)",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}));
        }
        Op::Publish | Op::Broadcast => params.push(json!({"name": "exclude", "in": "query",
            "required": false, "description": "a connection id not to send to",
            "schema": {"type": "string"}})),
        _ => {}
    }
    Value::Array(params)
}

fn request_body(op: Op) -> Option<Value> {
    match op {
        Op::PostToConnection | Op::Publish | Op::Broadcast => Some(json!({
            "required": true,
            "description": "the exact bytes to send: a text frame when UTF-8, binary otherwise",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        })),
        Op::Batch => Some(json!({
            "required": true,
            "content": {"application/json": {"schema": {"type": "array",
                "items": {"$ref": "#/components/schemas/BatchItem"}}}}
        })),
        _ => None,
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn responses(op: Op) -> Value {
    let ok = |schema: Option<&str>, description: &str| match schema {
        Some(s) => {
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}})
        }
        None => json!({"description": description}),
    };
    let mut r = Map::new();
    match op {
        Op::Health => {
            r.insert("200".into(), json!({"description": "alive"}));
        }
        Op::Ready => {
            r.insert("200".into(), json!({"description": "ready"}));
            r.insert(
                "503".into(),
                error("not ready (draining); the body says why"),
            );
        }
        Op::Metrics => {
            r.insert(
                "200".into(),
                json!({"description": "Prometheus text format", "content": {"text/plain": {}}}),
            );
        }
        Op::OpenApi => {
            r.insert(
                "200".into(),
                json!({"description": "OpenAPI 3 document", "content": {"application/json": {}}}),
            );
        }
        Op::PostToConnection => {
            r.insert("200".into(), ok(None, "queued for the client"));
        }
        Op::GetConnection => {
            r.insert("200".into(), ok(Some("Connection"), "the connection"));
        }
        Op::ListConnections => {
            r.insert(
                "200".into(),
                ok(Some("ConnectionPage"), "a page of open connections"),
            );
        }
        Op::DeleteConnection | Op::Subscribe | Op::Unsubscribe => {
            r.insert("204".into(), ok(None, "done"));
        }
        Op::Publish | Op::Broadcast => {
            r.insert(
                "200".into(),
                ok(Some("Recipients"), "queued for this many connections"),
            );
        }
        Op::GetChannel => {
            r.insert("200".into(), ok(Some("Subscribers"), "subscriber count"));
        }
        Op::GetHistory => {
            r.insert(
                "200".into(),
                ok(Some("History"), "a page of the channel's history"),
            );
        }
        Op::GetPresence => {
            r.insert(
                "200".into(),
                json!({"description": "a page of the channel's subscribers",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "connectionId": {"type": "string"},
                        "connectedAt": {"type": "string", "format": "date-time"},
                        "principalId": {"type": "string"}}}},
                    "nextCursor": {"type": "string", "description": "absent on the last page"}},
                    "required": ["items"]}}}}),
            );
        }
        Op::GetPresenceStats => {
            r.insert(
                "200".into(),
                json!({"description": "subscriber and principal counts",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "connections": {"type": "integer"},
                    "principals": {"type": "integer"}}}}}}),
            );
        }
        Op::DeleteHistory => {
            r.insert(
                "200".into(),
                json!({"description": "forgotten",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "deleted": {"type": "integer"}}}}}}),
            );
        }
        Op::DescribeNode => {
            r.insert(
                "200".into(),
                json!({"description": "this node's cluster membership",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "nodeId": {"type": "string"},
                    "cluster": {"type": "boolean"},
                    "redis": {"type": "string", "enum": ["up", "down", "none"]},
                    "fenced": {"type": "boolean"},
                    "healthyMs": {"type": "integer"}}}}}}),
            );
        }
        Op::Reload => {
            r.insert(
                "200".into(),
                json!({"description": "reloaded: what applies now, what needs a restart",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "applied": {"type": "array", "items": {"type": "string"}},
                    "needRestart": {"type": "array", "items": {"type": "string"}}}}}}}),
            );
            r.insert(
                "404".into(),
                error("NotFoundException: this node has no configuration to reload"),
            );
            r.insert("422".into(), error("UnprocessableEntityException: the new configuration has problems; the running one stays"));
        }
        Op::Batch => {
            r.insert("200".into(), json!({"description": "one result per item, in order",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchResult"}}}}}}}));
        }
    }
    if !op.is_public() {
        r.insert(
            "400".into(),
            error("BadRequestException: malformed id, channel, code or body"),
        );
        r.insert(
            "401".into(),
            error("UnauthorizedException: credentials required"),
        );
        r.insert(
            "403".into(),
            error("ForbiddenException: bad credentials or another stage"),
        );
    }
    match op {
        Op::PostToConnection
        | Op::GetConnection
        | Op::DeleteConnection
        | Op::Subscribe
        | Op::Unsubscribe => {
            r.insert("410".into(), error("GoneException: no such connection"));
        }
        _ => {}
    }
    match op {
        Op::PostToConnection | Op::Publish | Op::Broadcast | Op::Batch => {
            r.insert(
                "413".into(),
                error("PayloadTooLargeException: body over the limit"),
            );
        }
        _ => {}
    }
    if op == Op::PostToConnection {
        r.insert(
            "429".into(),
            error("LimitExceededException: the connection's send queue is full"),
        );
    }
    Value::Object(r)
}

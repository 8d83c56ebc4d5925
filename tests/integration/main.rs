//! Gangway's integration tests, one binary: real nodes on 127.0.0.1:0, real clients (Python
//! `websockets`, boto3, the AWS CLI, the JS SDK), real backends and real `redis-server`
//! processes. `support` holds the one set of helpers every module uses.

mod support;
mod tls;

mod authorizers;
mod aws_lambda;
mod aws_sdk;
mod cli;
mod cluster;
mod control_api;
mod edge;
mod fanout;
mod history;
mod lambda;
mod limits;
mod observability;
mod partitions;
mod routes;
mod security;
mod write_through;

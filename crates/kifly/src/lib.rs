//! Kifly: an agentic-commerce server. AI agents search a multi-seller catalog, fill a cart and set a
//! shipping address over a REST API under `/api/agent/*` and an MCP server at `/api/mcp`.
//!
//! Layout: `service` holds what Kifly does (shared by REST, MCP and the CLI); `http` is the REST
//! front end and the router every front end is mounted on; `mcp` the MCP front end; `app` the shared
//! context; `auth`, `rate_limit` and `idempotency` the cross-cutting contracts; `search` the
//! in-memory multilingual catalog index; `payments` the provider clients and `sandbox` the built-in
//! provider fakes they talk to when no credentials are set; `server` runs it all;
//! `cli` is the `kifly` command. Domain rules live in `kifly-core`, persistence in `kifly-store`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod mail;
pub mod mcp;
pub mod outbox;
pub mod payments;
pub mod rate_limit;
pub mod rate_limit_redis;
pub mod sandbox;
pub mod search;
pub mod server;
pub mod service;

//! Kifly's HTTP and CLI integration tests: one binary, one module per area. In-process tests drive
//! the real router (real SQLite file in a temp dir, real middleware) with `tower::ServiceExt::oneshot`;
//! the CLI tests run the real `kifly` binary.

mod process;
mod support;

mod auth;
mod buyers;
mod carts;
mod catalog;
mod checkout;
mod cli;
mod cluster;
mod errors;
mod idempotency;
mod mcp;
mod openapi;
mod ops;
mod rate_limits;
mod search;

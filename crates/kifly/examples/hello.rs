//! The benchmark ceiling: a bare axum "hello" endpoint on the same runtime, serving stack and
//! machine as Kifly, measured by the same load tool in the same run (`scripts/bench.sh`).

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("hello listening on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/hello", get(|| async { "hello" }))).await
}

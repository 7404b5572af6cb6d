//! Running the server: bind, print the listening line, serve until a shutdown signal, run the
//! background chores (idempotency purge, overdue-order sweep, mail outbox, metrics upkeep), then
//! drain in-flight requests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{App, now_ms};
use crate::idempotency::RETENTION_MS;

/// Serves `app` on `listener` until Ctrl-C / SIGTERM.
pub async fn serve(app: App, listener: TcpListener) -> std::io::Result<()> {
    tokio::spawn(purge_loop(app.clone()));
    tokio::spawn(sweep_loop(app.clone()));
    tokio::spawn(crate::outbox::run(app.store.clone(), app.mailer.clone(), app.outbox.clone()));
    tokio::spawn(metrics_upkeep());
    let router = crate::http::router(app);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Deletes finished idempotency records older than the retention window, hourly.
async fn purge_loop(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match app.store.purge_idempotency(now_ms() - RETENTION_MS).await {
            Ok(n) if n > 0 => tracing::info!(records = n, "purged expired idempotency records"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
        }
    }
}

/// Folds recorded histogram samples into their buckets every few seconds. Without this the recorder
/// keeps every raw sample until the next `/metrics` scrape, so a server nobody scrapes would grow by
/// a few bytes per request.
async fn metrics_upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        crate::http::prometheus().run_upkeep();
    }
}

/// Settles or expires unpaid orders past their payment window, every 30 s. Every node may run it:
/// each order moves once (conditional updates), and provider calls are idempotent.
async fn sweep_loop(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        match crate::service::checkout::sweep_overdue(&app).await {
            Ok(n) if n > 0 => tracing::info!(orders = n, "swept overdue orders"),
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code, "order sweep failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

//! Serving a router over HTTP/1.1 with bounded header reads, for both services.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fires: a client that opens a
//! connection and sends its request head a byte a minute keeps a connection and a task for as long as it likes
//! (slowloris). This loop is the same accept-and-serve with a timer, a header read timeout and `TCP_NODELAY`, and
//! the same graceful stop: on `shutdown` it stops accepting, lets requests in flight finish and closes idle
//! connections. Body reads are bounded where bodies are read (crm-api's JSON extractor).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `shutdown`, then waits for requests in flight. A client that has not sent
/// a whole request head within `header_read_timeout` of the server being ready for it (the connection opening,
/// or the previous response going out) is disconnected: this is also the idle keep-alive timeout.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken, header_read_timeout: Duration) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

//! Serves the status page: `/` (one self-contained HTML file: no build step, nothing from a CDN), `/state`
//! (the data as JSON) and `/events` (the same data again on every change, as server-sent events). Read-only:
//! it has no route that changes anything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Hub;

/// The page: markup, style and script in one file, compiled into the binary.
const PAGE: &str = include_str!("index.html");

/// Changes closer together than this go out as one snapshot (a build reports every step).
const COALESCE: Duration = Duration::from_millis(100);

/// Binds the page's address; an error names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot serve the status page on {addr}: {e}")))
}

/// The routes, over `hub`; event streams end when `stop` is cancelled.
pub fn router(hub: Arc<Hub>, stop: CancellationToken) -> Router {
    let state = hub.clone();
    Router::new()
        .route("/", get(|| async { ([("cache-control", "no-store")], Html(PAGE)) }))
        .route("/state", get(move || async move { ([("content-type", "application/json")], state.snapshot()) }))
        .route("/events", get(move || async move { events(hub, stop).into_response() }))
}

/// The snapshot now, then one after every change, until `stop`.
fn events(hub: Arc<Hub>, stop: CancellationToken) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = hub.subscribe();
    let stream = futures::stream::unfold((hub, rx, true), move |(hub, mut rx, first)| {
        let stop = stop.clone();
        async move {
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = stop.cancelled() => return None,
                }
                tokio::time::sleep(COALESCE).await;
            }
            rx.borrow_and_update();
            let event = Event::default().event("state").data(hub.snapshot());
            Some((Ok(event), (hub, rx, false)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Serves the page on `listener` until `stop`.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, stop: CancellationToken) {
    let app = router(hub, stop.clone());
    let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
}

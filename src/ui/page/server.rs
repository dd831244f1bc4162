//! Serves the status page: `/` (one self-contained HTML file: no build step, nothing from a CDN), `/state`
//! (the data as JSON), `/events` (the same data again on every change, as server-sent events) and one
//! action, `POST /trigger?image=NAME` (build what the image holds, as `devloop trigger` does), taken only on a
//! loopback address. It answers only requests that name it by a loopback name or the
//! address it is bound to, and none from another origin: a DNS-rebinding page, whose own name resolves to
//! 127.0.0.1, could otherwise read the build and pod logs ([`Allowed`]).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
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

/// The routes, over `hub`, for a server bound to `addr`; event streams end when `stop` is cancelled.
pub fn router(hub: Arc<Hub>, stop: CancellationToken, addr: SocketAddr) -> Router {
    let (state, trigger_hub) = (hub.clone(), hub.clone());
    let loopback = addr.ip().is_loopback();
    Router::new()
        .route("/", get(|| async { ([("cache-control", "no-store")], Html(PAGE)) }))
        .route("/state", get(move || async move { ([("content-type", "application/json")], state.snapshot()) }))
        .route("/events", get(move || async move { events(hub.clone(), stop).into_response() }))
        .route("/trigger", post(move |uri: Uri| async move { trigger(&trigger_hub, loopback, &uri) }))
        .layer(middleware::from_fn_with_state(Arc::new(Allowed::for_addr(addr)), guard))
}

/// Queues a trigger of `image`: 403 off loopback (whoever reaches a shared address may read, not act), 404
/// for an image the page does not show, 503 when `up` takes no trigger now.
fn trigger(hub: &Hub, loopback: bool, uri: &Uri) -> (StatusCode, String) {
    if !loopback {
        return (StatusCode::FORBIDDEN, "the page takes triggers only on a loopback address; use `devloop trigger`\n".into());
    }
    let query = uri.query().unwrap_or_default().as_bytes();
    let Some((_, image)) = form_urlencoded::parse(query).find(|(k, _)| k == "image") else {
        return (StatusCode::BAD_REQUEST, "name the image: /trigger?image=NAME\n".into());
    };
    match hub.trigger(&image) {
        Ok(()) => (StatusCode::ACCEPTED, format!("triggered {image}\n")),
        Err((code, why)) => (code, format!("{why}\n")),
    }
}

/// Whom the page answers: requests whose Host (and Origin, when sent) name it by `localhost`, `127.0.0.1` or
/// `[::1]`, or by the address it is bound to when that is not loopback, always with its port. Bound to every
/// address (`0.0.0.0`, `[::]`), any IP address with its port will do: only a name can be rebound.
#[derive(Debug, Clone)]
pub struct Allowed {
    port: u16,
    /// The bound address, when a request may name it (not loopback, not unspecified).
    own: Option<IpAddr>,
    /// Bound to every address.
    any_ip: bool,
}

impl Allowed {
    /// The names a server bound to `addr` answers to.
    pub fn for_addr(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        let own = (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip);
        Allowed { port: addr.port(), own, any_ip: ip.is_unspecified() }
    }

    /// Whether `authority` (`host[:port]`; no port is 80) names this server.
    fn names_us(&self, authority: &str) -> bool {
        let Ok(a) = authority.parse::<axum::http::uri::Authority>() else { return false };
        if a.as_str().contains('@') || a.port_u16().unwrap_or(80) != self.port {
            return false;
        }
        let host = a.host().to_ascii_lowercase();
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        match ip {
            Some(ip) => {
                ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]) || Some(ip) == self.own || self.any_ip
            }
            None => host == "localhost",
        }
    }

    /// Ok when the request is for this server and from its own origin (or from none); Err says why not.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
        let host = match uri.authority() {
            // An absolute URI names the server the client meant; Host then does not count.
            Some(a) => Some(a.as_str()),
            None => headers.get("host").map(|h| h.to_str().unwrap_or("(not text)")),
        };
        match host {
            None => return Err("a request without Host is refused".into()),
            Some(h) if !self.names_us(h) => return Err(format!("Host {h} is refused")),
            Some(_) => {}
        }
        let Some(origin) = headers.get("origin") else { return Ok(()) };
        let origin = origin.to_str().unwrap_or("(not text)");
        let ours = origin.strip_prefix("http://").is_some_and(|a| self.names_us(a.trim_end_matches('/')));
        if ours {
            Ok(())
        } else {
            Err(format!("Origin {origin} is refused"))
        }
    }
}

/// Answers 403 with a short reason to a request [`Allowed`] refuses.
async fn guard(State(allowed): State<Arc<Allowed>>, req: Request, next: Next) -> Response {
    match allowed.check(req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            let body = format!("{why}: devloop's status page answers http://localhost:{}/ (or the address it serves on)\n", allowed.port);
            (StatusCode::FORBIDDEN, [("content-type", "text/plain; charset=utf-8")], body).into_response()
        }
    }
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
    let Ok(addr) = listener.local_addr() else { return };
    let app = router(hub, stop.clone(), addr);
    let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
}

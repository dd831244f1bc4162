//! Serves the status page: `/` (one self-contained HTML file: no build step, nothing from a CDN), `/state`
//! (the data as JSON), `/events` (server-sent events: `hello` with this `up`'s id and the page's token, then
//! `state` on every change and `logs` with the lines that are new; a page that reconnects names the last line
//! it has, `Last-Event-ID`, and gets what it missed) and the actions, `POST /trigger`, `/rebuild`, `/pause`,
//! `/resume` `?image=NAME`, taken only on a loopback address and only with the page's token
//! (`X-Devloop-Token`), which another origin cannot read. It answers only requests that name it by a loopback
//! name or the address it is bound to, and none from another origin: a DNS-rebinding page, whose own name
//! resolves to 127.0.0.1, could otherwise read the build and pod logs ([`Allowed`]).

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

use super::{Act, Hub};

/// The page: markup, style and script in one file, compiled into the binary. `__DEVLOOP_TOKEN__` in it is
/// replaced by the page's token.
const PAGE: &str = include_str!("index.html");

/// The header a request that acts carries the page's token in.
pub const TOKEN_HEADER: &str = "x-devloop-token";

/// How soon a page whose connection dropped tries again.
const RETRY: Duration = Duration::from_secs(1);

/// Changes closer together than this go out as one snapshot (a build reports every step).
const COALESCE: Duration = Duration::from_millis(100);

/// Binds the page's address; an error names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot serve the status page on {addr}: {e}")))
}

/// The routes, over `hub`, for a server bound to `addr`; event streams end when `stop` is cancelled.
pub fn router(hub: Arc<Hub>, stop: CancellationToken, addr: SocketAddr) -> Router {
    let loopback = addr.ip().is_loopback();
    let page = PAGE.replace("__DEVLOOP_TOKEN__", hub.token());
    let (state, events_hub) = (hub.clone(), hub.clone());
    let mut router = Router::new()
        .route("/", get(move || async move { ([("cache-control", "no-store")], Html(page)) }))
        .route("/state", get(move || async move { ([("content-type", "application/json")], state.snapshot()) }))
        .route("/events", get(move |headers: HeaderMap| async move { events(events_hub, stop, last_event(&headers)).into_response() }));
    for (path, act) in [("/trigger", Act::Trigger), ("/rebuild", Act::Rebuild), ("/pause", Act::Pause), ("/resume", Act::Resume)] {
        let hub = hub.clone();
        router = router.route(path, post(move |uri: Uri, headers: HeaderMap| async move { acted(&hub, act, loopback, &uri, &headers) }));
    }
    router.layer(middleware::from_fn_with_state(Arc::new(Allowed::for_addr(addr)), guard))
}

/// Asks `up` to `act` on `image`: 403 off loopback (whoever reaches a shared address may read, not act) or
/// without the page's token, 404 for an image the page does not show, 503 when `up` takes no request now.
fn acted(hub: &Hub, act: Act, loopback: bool, uri: &Uri, headers: &HeaderMap) -> (StatusCode, String) {
    if !loopback {
        return (StatusCode::FORBIDDEN, "the page acts only on a loopback address; use `devloop trigger` or up's terminal\n".into());
    }
    let token = headers.get(TOKEN_HEADER).map(|t| t.as_bytes()).unwrap_or_default();
    if !same(token, hub.token().as_bytes()) {
        return (StatusCode::FORBIDDEN, format!("{} without the page's token: reload the page\n", uri.path()));
    }
    let query = uri.query().unwrap_or_default().as_bytes();
    let Some((_, image)) = form_urlencoded::parse(query).find(|(k, _)| k == "image") else {
        return (StatusCode::BAD_REQUEST, format!("name the image: {}?image=NAME\n", uri.path()));
    };
    match hub.act(act, &image) {
        Ok(()) => (StatusCode::ACCEPTED, format!("{} {image}\n", uri.path().trim_start_matches('/'))),
        Err((code, why)) => (code, format!("{why}\n")),
    }
}

/// Whether two tokens are the same, in time that does not tell how much of them matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The `Last-Event-ID` a reconnecting page sends: (the `up` it was connected to, the last line it has).
fn last_event(headers: &HeaderMap) -> Option<(String, u64)> {
    let id = headers.get("last-event-id")?.to_str().ok()?;
    let (boot, seq) = id.split_once(':')?;
    Some((boot.to_string(), seq.parse().ok()?))
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

/// One page's stream: what it was last sent.
struct Feed {
    hub: Arc<Hub>,
    rx: tokio::sync::watch::Receiver<u64>,
    /// The last line sent, and the state's version (none: not sent yet).
    seq: u64,
    version: Option<u64>,
    /// Events ready to go.
    ready: std::collections::VecDeque<Event>,
}

impl Feed {
    /// Queues what changed since the last send: new lines, then the state if it changed.
    fn catch_up(&mut self) {
        self.rx.borrow_and_update();
        let (_, version) = self.hub.versions();
        if let Some((data, last)) = self.hub.lines_after(self.seq) {
            self.seq = last;
            self.ready.push_back(Event::default().event("logs").id(format!("{}:{last}", self.hub.boot())).data(data));
        }
        if self.version != Some(version) {
            self.version = Some(version);
            self.ready.push_back(Event::default().event("state").data(self.hub.snapshot()));
        }
    }
}

/// `hello`, the lines the page lacks (after `last`, when it names this `up`; else every line kept), the
/// state, then what changes, until `stop`.
fn events(hub: Arc<Hub>, stop: CancellationToken, last: Option<(String, u64)>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let seq = last.filter(|(boot, _)| boot == hub.boot()).map_or(0, |(_, seq)| seq);
    let hello = serde_json::json!({
        "boot": hub.boot(),
        "token": hub.token(),
        "limits": {"lines": super::logs::LINES, "line_bytes": super::logs::LINE_BYTES, "iterations": super::ITERATIONS},
    });
    let mut feed = Feed { rx: hub.subscribe(), hub, seq, version: None, ready: Default::default() };
    feed.ready.push_back(Event::default().event("hello").retry(RETRY).data(hello.to_string()));
    feed.catch_up();
    let stream = futures::stream::unfold(feed, move |mut feed| {
        let stop = stop.clone();
        async move {
            while feed.ready.is_empty() {
                tokio::select! {
                    changed = feed.rx.changed() => changed.ok()?,
                    _ = stop.cancelled() => return None,
                }
                tokio::time::sleep(COALESCE).await;
                feed.catch_up();
            }
            let event = feed.ready.pop_front().expect("not empty");
            Some((Ok(event), feed))
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

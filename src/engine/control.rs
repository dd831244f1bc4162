//! Asking a running `up` to build what its manual images hold ([`crate::engine::decide::Event::Trigger`]), to
//! rebuild or pause an image: from its own terminal (keys, read by `ui::keys`), from its page (the buttons), or
//! from another shell (`devloop trigger IMAGE…`).
//!
//! The other shell reaches `up` through a Unix socket only its user can open, named after the config file
//! (one `up` per project): `$XDG_RUNTIME_DIR/devloop/<hash>.sock`, else under the temp dir in a directory of
//! the user's own (mode 0700). One line each way: `trigger [IMAGE…]`, then `ok …` or `error …`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Errors of `devloop trigger`, and of setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `up` listens for this config.
    #[error("no `devloop up` is running for {config} (nothing listens on {socket})")]
    NotRunning { config: String, socket: String },
    /// `up` refused the request (an unknown image).
    #[error("{0}")]
    Refused(String),
    /// The socket could not be used.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
}

/// What someone asked a running `up` to do, from its terminal, its page or another shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Build what these images hold (none: every image holding a change).
    Trigger(Vec<String>),
    /// Look at the image's files again and build them even when their tag is deployed or in the registry
    /// (`devloop build --force` for one image), then roll it out.
    Rebuild(String),
    /// Stop acting on the image's changes (`true`: they are held, as a manual image's are) or resume
    /// (`false`: what was held meanwhile is acted on at once).
    Pause(String, bool),
}

/// Where requests come in from, whatever asked: a bounded queue the loop reads. Cloned into the page, the
/// terminal and the socket server; the loop takes the receiving end once.
#[derive(Debug)]
pub struct Triggers {
    tx: mpsc::Sender<Request>,
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
}

impl Triggers {
    /// A new queue (a few requests deep: a trigger is a button press, not a stream).
    pub fn new() -> Arc<Triggers> {
        let (tx, rx) = mpsc::channel(16);
        Arc::new(Triggers { tx, rx: Mutex::new(Some(rx)) })
    }
    /// Asks for `images` (none: every image holding a change) to be built; false when the queue is full or
    /// `up` has stopped.
    pub fn send(&self, images: Vec<String>) -> bool {
        self.ask(Request::Trigger(images))
    }
    /// Queues `request`; false when the queue is full or `up` has stopped.
    pub fn ask(&self, request: Request) -> bool {
        self.tx.try_send(request).is_ok()
    }
    /// The receiving end, for a test standing in for the loop.
    #[cfg(test)]
    pub(crate) fn take_for_test(&self) -> mpsc::Receiver<Request> {
        self.take().expect("not taken")
    }
    /// The receiving end, for the loop (once).
    pub(super) fn take(&self) -> Option<mpsc::Receiver<Request>> {
        self.rx.lock().expect("not poisoned").take()
    }
}

/// The socket of the `up` running `config`.
pub fn socket_path(config: &Path) -> PathBuf {
    let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let hash = hex::encode(Sha256::digest(config.as_os_str().as_encoded_bytes()));
    runtime_dir().join(format!("{}.sock", &hash[..16]))
}

fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("devloop"),
        // SAFETY: getuid cannot fail and has no memory effects.
        None => std::env::temp_dir().join(format!("devloop-{}", unsafe { libc::getuid() })),
    }
}

/// Listens on `config`'s socket until `stop`; each request's names are checked with `known` (an error
/// names the configured images) and queued on `triggers`. A socket left by an `up` that died is replaced;
/// one another `up` still answers on is an error.
pub async fn serve(config: &Path, known: Known, triggers: Arc<Triggers>, stop: CancellationToken) -> Result<(), Error> {
    let path = socket_path(config);
    let listener = bind(&path).await?;
    serve_on(listener, path, known, triggers, stop).await
}

/// Checks an image name: `Err` says why it is not one of the config's.
pub type Known = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Serves requests on a bound socket (removed at the end).
async fn serve_on(listener: UnixListener, path: PathBuf, known: Known, triggers: Arc<Triggers>, stop: CancellationToken) -> Result<(), Error> {
    let _remove = Removed(path.clone());
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (known, triggers) = (known.clone(), triggers.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).take(4096).read_line(&mut line).await.is_err() {
                return;
            }
            let reply = answer(&line, &*known, &triggers);
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
        });
    }
}

/// The reply to one request line.
fn answer(line: &str, known: &dyn Fn(&str) -> Result<(), String>, triggers: &Triggers) -> String {
    let mut words = line.split_whitespace();
    if words.next() != Some("trigger") {
        return "error: expected `trigger [IMAGE…]`".into();
    }
    let images: Vec<String> = words.map(str::to_string).collect();
    if let Some(e) = images.iter().find_map(|i| known(i).err()) {
        return format!("error: {e}");
    }
    if !triggers.send(images.clone()) {
        return "error: devloop up is not taking triggers now (stopping, or too many at once)".into();
    }
    match images.is_empty() {
        true => "ok: every image holding a change".into(),
        false => format!("ok: {}", images.join(", ")),
    }
}

/// Binds the socket in a directory only this user can enter.
async fn bind(path: &Path) -> Result<UnixListener, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = p.display().to_string();
        move |source| Error::Io { what, path, source }
    }
    let dir = path.parent().expect("a file in a directory");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("cannot create", dir))?;
    // The temp dir is shared: a directory someone else made there must not be used.
    let meta = std::fs::metadata(dir).map_err(io("cannot read", dir))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("cannot restrict", dir))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            let e = std::io::Error::new(std::io::ErrorKind::AddrInUse, "another `devloop up` of this project is running");
            return Err(Error::Io { what: "cannot listen on", path: path.display().to_string(), source: e });
        }
        let _ = std::fs::remove_file(path); // left by an `up` that did not stop cleanly
    }
    UnixListener::bind(path).map_err(io("cannot listen on", path))
}

/// Removes the socket when `up` ends.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `devloop trigger [IMAGE…]`: asks the `up` running `config` to build; its answer.
pub async fn trigger(config: &Path, images: &[String]) -> Result<String, Error> {
    trigger_at(config, &socket_path(config), images).await
}

async fn trigger_at(config: &Path, path: &Path, images: &[String]) -> Result<String, Error> {
    let not_running = || Error::NotRunning { config: config.display().to_string(), socket: path.display().to_string() };
    let stream = UnixStream::connect(path).await.map_err(|_| not_running())?;
    let (read, mut write) = stream.into_split();
    let request = format!("trigger {}\n", images.join(" "));
    write.write_all(request.as_bytes()).await.map_err(|source| Error::Io { what: "cannot write to", path: path.display().to_string(), source })?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await.map_err(|source| Error::Io { what: "cannot read from", path: path.display().to_string(), source })?;
    let reply = reply.trim();
    match reply.strip_prefix("ok: ") {
        Some(ok) => Ok(ok.to_string()),
        None => Err(Error::Refused(reply.strip_prefix("error: ").unwrap_or(reply).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Arc::new(|i: &str| if i == "api" || i == "web" { Ok(()) } else { Err(format!("no image named `{i}` (configured: api, web)")) })
    }

    #[tokio::test]
    async fn another_shell_triggers_a_running_up_by_its_config_and_hears_about_unknown_images() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("devloop.toml");
        let path = dir.path().join("run/devloop/x.sock");
        let e = trigger_at(&config, &path, &["api".into()]).await.unwrap_err();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
        let triggers = Triggers::new();
        let mut rx = triggers.take().unwrap();
        let stop = CancellationToken::new();
        let listener = bind(&path).await.unwrap();
        let server = tokio::spawn(serve_on(listener, path.clone(), known(), triggers.clone(), stop.clone()));
        assert_eq!(trigger_at(&config, &path, &["api".into()]).await.unwrap(), "api");
        assert_eq!(rx.recv().await.unwrap(), Request::Trigger(vec!["api".into()]));
        assert_eq!(trigger_at(&config, &path, &[]).await.unwrap(), "every image holding a change");
        assert_eq!(rx.recv().await.unwrap(), Request::Trigger(vec![]));
        let e = trigger_at(&config, &path, &["api".into(), "wbe".into()]).await.unwrap_err();
        assert_eq!(e.to_string(), "no image named `wbe` (configured: api, web)");
        assert!(rx.try_recv().is_err(), "nothing queued for a refused request");
        // A second `up` of the same project is refused while the first answers.
        let e = bind(&path).await.unwrap_err();
        assert!(e.to_string().contains("another `devloop up` of this project is running"), "{e}");
        // Only its user may enter the socket's directory.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        stop.cancel();
        server.await.unwrap().unwrap();
        assert!(!path.exists(), "the socket goes with `up`");
        // A socket left behind by an `up` that died is taken over.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert!(bind(&path).await.is_ok());
    }

    #[test]
    fn each_project_has_its_own_socket() {
        assert_ne!(socket_path(Path::new("/a/devloop.toml")), socket_path(Path::new("/b/devloop.toml")));
        assert_eq!(socket_path(Path::new("/a/devloop.toml")), socket_path(Path::new("/a/devloop.toml")));
    }
}

//! Which Docker Engine an address names: `docker://` follows Docker's own environment rules (DOCKER_HOST,
//! DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, as `minikube docker-env` sets them), `docker-unix:///path` names a
//! socket, `docker-tcp://host:port` an engine over TLS with certificates from `[buildkit]` or DOCKER_CERT_PATH.

use std::path::{Path, PathBuf};

use crate::config;

/// The engine's socket when `DOCKER_HOST` names none.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A unix socket.
    Unix(PathBuf),
    /// TCP, with TLS unless `tls` is `None` (only with `[buildkit] insecure = true`).
    Tcp {
        /// Host name or IP address (also the name the server certificate must carry).
        host: String,
        /// Port.
        port: u16,
        /// The certificates, when TLS.
        tls: Option<TlsFiles>,
    },
}

/// The PEM files of a TLS engine connection (Docker's ca.pem, cert.pem, key.pem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle the server's certificate is verified against (and only it).
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Docker's layout: `dir/ca.pem`, `dir/cert.pem`, `dir/key.pem`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }

    /// For messages: the directory when the files follow Docker's layout, else the three paths.
    pub fn describe(&self) -> String {
        match self.ca.parent() {
            Some(dir) if *self == TlsFiles::in_dir(dir) => format!("certificates in {}", dir.display()),
            _ => format!("CA {}, client certificate {}, key {}", self.ca.display(), self.cert.display(), self.key.display()),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix://{}", p.display()),
            Addr::Tcp { host, port, .. } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Addr::Tcp { host, port, .. } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl Addr {
    /// The same engine as a BuildKit address (`docker-unix:///path`, `docker-tcp://host:port`), for errors
    /// reported as BuildKit's.
    pub fn buildkit_form(&self) -> String {
        format!("docker-{self}")
    }

    /// `tcp://10.0.0.1:2376 (TLS, certificates in /dir)`: the address and how it is secured.
    pub fn describe(&self) -> String {
        match self {
            Addr::Tcp { tls: Some(t), .. } => format!("{self} (TLS, {})", t.describe()),
            Addr::Tcp { tls: None, .. } => format!("{self} (plain TCP, no TLS)"),
            Addr::Unix(_) => self.to_string(),
        }
    }
}

/// The Docker environment variables devloop reads (a struct, so resolution is testable without the process env).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// DOCKER_HOST.
    pub host: Option<String>,
    /// DOCKER_TLS_VERIFY: any non-empty value turns TLS with verification on, as in Docker's CLI.
    pub tls_verify: Option<String>,
    /// DOCKER_CERT_PATH (default `~/.docker`).
    pub cert_path: Option<String>,
    /// The home directory, for the default certificate directory.
    pub home: Option<PathBuf>,
}

impl Env {
    /// This process's environment.
    pub fn current() -> Env {
        let var = |k: &str| std::env::var(k).ok();
        Env {
            host: var("DOCKER_HOST"),
            tls_verify: var("DOCKER_TLS_VERIFY"),
            cert_path: var("DOCKER_CERT_PATH"),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    fn cert_dir(&self) -> Result<PathBuf, String> {
        match (self.cert_path.as_deref().filter(|p| !p.is_empty()), &self.home) {
            (Some(p), _) => Ok(PathBuf::from(p)),
            (None, Some(home)) => Ok(home.join(".docker")),
            (None, None) => Err("DOCKER_CERT_PATH is not set and there is no home directory for ~/.docker".into()),
        }
    }
}

/// The engine `bk.addr` names: `Some` for `docker://`, `docker-unix://` and `docker-tcp://`, `None` for any
/// other scheme (a buildkitd address). Errors say what to change; TLS files are not read here.
pub fn engine_of(bk: &config::Buildkit, env: &Env) -> Option<Result<Addr, String>> {
    let addr = bk.addr.as_str();
    if let Some(rest) = addr.strip_prefix("docker-unix://") {
        return Some(if rest.starts_with('/') {
            Ok(Addr::Unix(PathBuf::from(rest)))
        } else {
            Err(format!("`{addr}` needs an absolute socket path: docker-unix:///var/run/docker.sock"))
        });
    }
    if let Some(rest) = addr.strip_prefix("docker-tcp://") {
        return Some(docker_tcp(addr, rest, bk, env));
    }
    let rest = addr.strip_prefix("docker://")?;
    if !rest.is_empty() {
        return Some(Err(format!(
            "`{addr}`: docker:// takes no path (it means DOCKER_HOST, else {DEFAULT_SOCKET}); for another engine use \
             docker-unix:///path/to/docker.sock or docker-tcp://host:port"
        )));
    }
    let Some(host) = env.host.as_deref().filter(|h| !h.is_empty()) else {
        return Some(Ok(Addr::Unix(PathBuf::from(DEFAULT_SOCKET))));
    };
    Some(from_docker_host(host, bk.insecure, env))
}

fn from_docker_host(host: &str, insecure: bool, env: &Env) -> Result<Addr, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(Addr::Unix(PathBuf::from(path)))
        } else {
            Err(format!("DOCKER_HOST={host} needs an absolute socket path: unix:///var/run/docker.sock"))
        };
    }
    let Some(rest) = host.strip_prefix("tcp://") else {
        return Err(format!(
            "DOCKER_HOST={host}: devloop speaks to Docker Engine over unix:// sockets and tcp:// (with TLS) only; \
             forward the engine's socket (ssh -L /tmp/docker.sock:/var/run/docker.sock …) and use \
             docker-unix:///tmp/docker.sock, or set [buildkit] addr"
        ));
    };
    let verify = env.tls_verify.as_deref().is_some_and(|v| !v.is_empty());
    // Docker's default ports: 2376 with TLS, 2375 without.
    let (h, port) = host_port(rest, Some(if verify { 2376 } else { 2375 })).map_err(|m| format!("DOCKER_HOST={host}: {m}"))?;
    let tls = if verify {
        Some(TlsFiles::in_dir(&env.cert_dir()?))
    } else if insecure {
        None
    } else {
        return Err(format!(
            "DOCKER_HOST={host} without DOCKER_TLS_VERIFY is plain TCP: whoever reaches it is root on the engine's \
             host, and registry credentials and the build context would cross the network in the clear. Set \
             DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (as `minikube docker-env` does), or accept that with \
             `insecure = true` under [buildkit]"
        ));
    };
    Ok(Addr::Tcp { host: h, port, tls })
}

/// `docker-tcp://host:port`: TLS always (unless `insecure = true` and no tls-* key), with `[buildkit]`
/// tls-ca/tls-cert/tls-key when set, else Docker's files in DOCKER_CERT_PATH (default ~/.docker).
fn docker_tcp(addr: &str, rest: &str, bk: &config::Buildkit, env: &Env) -> Result<Addr, String> {
    let (host, port) = host_port(rest, None).map_err(|m| format!("`{addr}`: {m}"))?;
    let tls = match (&bk.tls_ca, &bk.tls_cert, &bk.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }),
        (None, None, None) if bk.insecure => None,
        (None, None, None) => Some(TlsFiles::in_dir(&env.cert_dir()?)),
        _ => return Err(format!("`{addr}` with [buildkit] TLS keys needs all three: tls-ca, tls-cert and tls-key")),
    };
    Ok(Addr::Tcp { host, port, tls })
}

/// `host:port`, `[v6]:port`, or a bare host when `default_port` is given.
fn host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let s = s.trim_end_matches('/');
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err("expected host:port".into());
    }
    let port = match (port, default_port) {
        (Some(p), _) => p.parse::<u16>().map_err(|_| format!("`{p}` is not a port"))?,
        (None, Some(d)) => d,
        (None, None) => return Err("needs a port: host:port".into()),
    };
    Ok((host.to_string(), port))
}

/// When no BuildKit address is set (`bk.addr_set` false): the engine Docker's environment names (DOCKER_HOST,
/// else the default socket) if `answers` says it is there; `Err` when DOCKER_HOST names one devloop will
/// not use (ssh://, plain tcp without `insecure`), so that the caller can say why.
pub fn auto_engine(bk: &config::Buildkit, env: &Env, answers: impl Fn(&Addr) -> bool) -> Result<Option<Addr>, String> {
    if bk.addr_set {
        return Ok(None);
    }
    let docker = config::Buildkit { addr: "docker://".into(), ..bk.clone() };
    let Some(found) = engine_of(&docker, env) else { return Ok(None) };
    let addr = found?;
    Ok(answers(&addr).then_some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bk(addr: &str) -> config::Buildkit {
        config::Buildkit { addr: addr.into(), ..Default::default() }
    }
    fn tcp(host: &str, port: u16, certs: Option<&str>) -> Addr {
        Addr::Tcp { host: host.into(), port, tls: certs.map(|d| TlsFiles::in_dir(Path::new(d))) }
    }
    fn unix(p: &str) -> Addr {
        Addr::Unix(PathBuf::from(p))
    }

    #[test]
    fn addresses_resolve_from_docker_s_environment() {
        // (addr, insecure, DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, expected engine or error fragment)
        type Want = Option<Result<Addr, &'static str>>;
        type Row<'a> = (&'a str, bool, Option<&'a str>, Option<&'a str>, Option<&'a str>, Want);
        let table: Vec<Row> = vec![
            ("docker://", false, None, None, None, Some(Ok(unix(DEFAULT_SOCKET)))),
            ("docker://", false, Some(""), None, None, Some(Ok(unix(DEFAULT_SOCKET)))),
            ("docker://", false, Some("unix:///run/user/1000/docker.sock"), None, None, Some(Ok(unix("/run/user/1000/docker.sock")))),
            ("docker://", false, Some("unix://rel.sock"), None, None, Some(Err("absolute socket path"))),
            // minikube docker-env
            ("docker://", false, Some("tcp://192.168.49.2:2376"), Some("1"), Some("/home/u/.minikube/certs"),
                Some(Ok(tcp("192.168.49.2", 2376, Some("/home/u/.minikube/certs"))))),
            // No DOCKER_CERT_PATH: ~/.docker, as Docker's CLI.
            ("docker://", false, Some("tcp://h.example:2376"), Some("1"), None, Some(Ok(tcp("h.example", 2376, Some("/home/u/.docker"))))),
            ("docker://", false, Some("tcp://h.example"), Some("1"), Some(""), Some(Ok(tcp("h.example", 2376, Some("/home/u/.docker"))))),
            ("docker://", false, Some("tcp://[fd00::2]:2376/"), Some("yes"), Some("/c"), Some(Ok(tcp("fd00::2", 2376, Some("/c"))))),
            // Plain tcp: refused unless insecure; an empty DOCKER_TLS_VERIFY is unset (Docker's rule).
            ("docker://", false, Some("tcp://10.0.0.1:2375"), None, Some("/c"), Some(Err("insecure = true"))),
            ("docker://", false, Some("tcp://10.0.0.1:2375"), Some(""), None, Some(Err("DOCKER_TLS_VERIFY=1"))),
            ("docker://", true, Some("tcp://10.0.0.1"), None, None, Some(Ok(tcp("10.0.0.1", 2375, None)))),
            ("docker://", false, Some("tcp://10.0.0.1:x"), Some("1"), None, Some(Err("not a port"))),
            // Engines devloop cannot speak to: an error, never the default socket.
            ("docker://", false, Some("ssh://me@host"), None, None, Some(Err("DOCKER_HOST=ssh://me@host: devloop speaks"))),
            ("docker://", false, Some("npipe:////./pipe/docker_engine"), None, None, Some(Err("unix:// sockets and tcp://"))),
            ("docker:///x.sock", false, None, None, None, Some(Err("docker-unix:///"))),
            // docker-unix ignores DOCKER_HOST.
            ("docker-unix:///srv/d.sock", false, Some("tcp://h:1"), None, None, Some(Ok(unix("/srv/d.sock")))),
            ("docker-unix://rel.sock", false, None, None, None, Some(Err("absolute"))),
            // docker-tcp: TLS from DOCKER_CERT_PATH (without needing DOCKER_TLS_VERIFY), plain only if insecure.
            ("docker-tcp://10.0.0.1:2376", false, Some("unix:///x.sock"), None, Some("/c"), Some(Ok(tcp("10.0.0.1", 2376, Some("/c"))))),
            ("docker-tcp://10.0.0.1:2376", false, None, None, None, Some(Ok(tcp("10.0.0.1", 2376, Some("/home/u/.docker"))))),
            ("docker-tcp://10.0.0.1:2375", true, None, None, Some("/c"), Some(Ok(tcp("10.0.0.1", 2375, None)))),
            ("docker-tcp://10.0.0.1", false, None, None, None, Some(Err("needs a port"))),
            ("unix:///run/buildkit/buildkitd.sock", false, Some("tcp://h:1"), Some("1"), None, None),
            ("tcp://h:1234", false, None, None, None, None),
        ];
        for (addr, insecure, host, verify, certs, want) in table {
            let env = Env {
                host: host.map(Into::into),
                tls_verify: verify.map(Into::into),
                cert_path: certs.map(Into::into),
                home: Some(PathBuf::from("/home/u")),
            };
            let got = engine_of(&config::Buildkit { insecure, ..bk(addr) }, &env);
            let case = format!("{addr} insecure={insecure} DOCKER_HOST={host:?} VERIFY={verify:?} CERT_PATH={certs:?}");
            match (got, want) {
                (None, None) => {}
                (Some(Ok(g)), Some(Ok(w))) => assert_eq!(g, w, "{case}"),
                (Some(Err(g)), Some(Err(w))) => assert!(g.contains(w), "{case}: {g}"),
                (g, w) => panic!("{case}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn docker_tcp_takes_tls_files_from_buildkit_keys_all_or_none() {
        let env = Env { cert_path: Some("/c".into()), ..Env::default() };
        let keys = config::Buildkit {
            tls_ca: Some("/k/ca.crt".into()),
            tls_cert: Some("/k/c.crt".into()),
            tls_key: Some("/k/c.key".into()),
            ..bk("docker-tcp://e:2376")
        };
        let files = TlsFiles { ca: "/k/ca.crt".into(), cert: "/k/c.crt".into(), key: "/k/c.key".into() };
        assert_eq!(engine_of(&keys, &env), Some(Ok(Addr::Tcp { host: "e".into(), port: 2376, tls: Some(files) })));
        let partial = config::Buildkit { tls_key: None, ..keys };
        assert!(matches!(engine_of(&partial, &env), Some(Err(m)) if m.contains("all three")));
        assert_eq!(TlsFiles::in_dir(Path::new("/c")).describe(), "certificates in /c");
        assert_eq!(tcp("10.0.0.1", 2376, Some("/c")).describe(), "tcp://10.0.0.1:2376 (TLS, certificates in /c)");
        assert_eq!(tcp("10.0.0.1", 2376, None).buildkit_form(), "docker-tcp://10.0.0.1:2376");
        assert_eq!(unix("/d.sock").buildkit_form(), "docker-unix:///d.sock");
    }

    #[test]
    fn the_engine_is_used_only_when_no_address_is_set_and_it_answers() {
        let only = |want: Addr| move |a: &Addr| *a == want;
        let env = |h: Option<&str>, v: Option<&str>| Env {
            host: h.map(Into::into),
            tls_verify: v.map(Into::into),
            cert_path: Some("/c".into()),
            home: None,
        };
        let unset = bk("");
        assert_eq!(auto_engine(&unset, &env(None, None), only(unix(DEFAULT_SOCKET))), Ok(Some(unix(DEFAULT_SOCKET))));
        assert_eq!(auto_engine(&unset, &env(Some("unix:///d.sock"), None), only(unix("/d.sock"))), Ok(Some(unix("/d.sock"))));
        // DOCKER_HOST names a socket that does not answer: not silently the default one.
        assert_eq!(auto_engine(&unset, &env(Some("unix:///d.sock"), None), only(unix(DEFAULT_SOCKET))), Ok(None));
        assert_eq!(auto_engine(&unset, &env(None, None), |_| false), Ok(None));
        let set = config::Buildkit { addr_set: true, ..bk("unix:///b.sock") };
        assert_eq!(auto_engine(&set, &env(None, None), only(unix(DEFAULT_SOCKET))), Ok(None));
        // minikube docker-env: the tcp+TLS engine.
        let mk = env(Some("tcp://192.168.49.2:2376"), Some("1"));
        assert_eq!(auto_engine(&unset, &mk, |_| true), Ok(Some(tcp("192.168.49.2", 2376, Some("/c")))));
        // Engines devloop will not use are reported, not replaced by the default socket.
        assert!(auto_engine(&unset, &env(Some("ssh://h"), None), |_| true).is_err_and(|m| m.contains("ssh://h")));
        assert!(auto_engine(&unset, &env(Some("tcp://h:2375"), None), |_| true).is_err_and(|m| m.contains("plain TCP")));
        let insecure = config::Buildkit { insecure: true, ..bk("") };
        assert_eq!(auto_engine(&insecure, &env(Some("tcp://h:2375"), None), |_| true), Ok(Some(tcp("h", 2375, None))));
    }
}

//! Small helpers the client layers (registry, Docker Engine, containerd, BuildKit) share. At the bottom of
//! the layers, so that no client imports another only for these.

/// An error and its causes on one line (transport errors hide the useful part in their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A random id made of lower-case letters and digits (BuildKit forbids `:` in session ids; containerd's
/// lease and snapshot keys take it as it is).
pub fn random_id() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(25).map(|c| (c as char).to_ascii_lowercase()).collect()
}

/// Runs blocking file work (walking a context, reading manifests) without stalling the async workers that
/// keep streams, watches and timers going: moved off them in a multi-threaded runtime, run in place
/// otherwise (a single-threaded runtime has no other worker to stall).
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_names_every_cause_in_order() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::other(Box::new(inner) as Box<dyn std::error::Error + Send + Sync>);
        assert!(super::error_chain(&outer).ends_with("connection refused"), "{}", super::error_chain(&outer));
        let id = super::random_id();
        assert_eq!(id.len(), 25);
        assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{id}");
    }
}

//! BuildKit addresses, parsed: the syntax of every kind devloop connects to, so a bad address is a config
//! error naming the key. Connecting (and finding what `docker://` means now) is the builders'.

pub mod docker;
pub mod kube;

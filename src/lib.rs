//! devloop: the inner dev loop for Kubernetes. Files are filtered ([`filter`], [`tree`]) and hashed into a
//! content tag ([`hash`]); images are built by talking to BuildKit directly ([`buildkit`]) and pushed to a
//! registry ([`registry`]) and rolled out ([`deploy`]); [`engine`] runs the stages; [`config`] reads devloop.toml.

pub mod buildkit;
pub mod cluster;
pub mod config;
pub mod containerd;
pub mod deliver;
pub mod deploy;
pub mod docker;
pub mod engine;
pub mod filter;
pub mod forward;
pub mod hash;
pub mod hook;
pub mod init;
pub mod interrupt;
pub mod junit;
pub mod prune;
pub mod reference;
pub mod registry;
pub mod resolve;
pub mod sync;
#[cfg(test)]
mod test_util;
pub mod tree;
pub mod util;
pub mod ui;
pub mod watch;

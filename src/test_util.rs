//! Helpers for unit tests.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer whose clones share one buffer, for reading back what a component printed.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pod labelled `app=<app>`, created at second `created` of a day, being deleted or not, with `status` as
/// its status object: the pickers' tests choose among these.
pub fn labelled_pod(name: &str, app: &str, created: u32, deleting: bool, status: serde_json::Value) -> Arc<k8s_openapi::api::core::v1::Pod> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": {"app": app},
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z"),
                "deletionTimestamp": if deleting { Some("2026-01-01T00:00:59Z") } else { None },
            },
            "status": status,
        }))
        .unwrap(),
    )
}

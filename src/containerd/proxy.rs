//! The content store devloop serves to BuildKit on the build session, for the `oci` exporter with
//! `tar=false`: BuildKit opens a write for every blob of the image with its expected digest and size; a blob
//! containerd already has is answered `AlreadyExists` (BuildKit then skips it and never sends its bytes), any
//! other write is passed through to containerd's own content store under the import's lease.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::api::containerd::services::content::v1::content_server::{Content, ContentServer};
use super::api::containerd::services::content::v1::*;
use super::api::google::protobuf::Empty;
use super::Containerd;

/// What one import moved.
#[derive(Debug, Default)]
pub struct ImportStats {
    /// Bytes written to containerd.
    pub written: AtomicU64,
    /// Blobs written, as (digest, size).
    pub new: Mutex<Vec<(String, i64)>>,
    /// Blobs containerd already had, as (digest, size).
    pub present: Mutex<Vec<(String, i64)>>,
}

/// What to do with a write's first message.
#[derive(Debug, PartialEq)]
pub enum Opening {
    /// Ask containerd whether it has this digest; skip the write if so.
    Check(String),
    /// Pass the write on (no expected digest to check, or not the opening STAT).
    Forward,
}

/// The decision for a write's first message: BuildKit opens every blob write with a STAT naming the
/// expected digest.
pub fn opening(first: &WriteContentRequest) -> Opening {
    if first.action == WriteAction::Stat as i32 && !first.expected.is_empty() {
        Opening::Check(first.expected.clone())
    } else {
        Opening::Forward
    }
}

/// The content store BuildKit writes into.
pub struct ImportStore {
    ctrd: Containerd,
    lease: String,
    stats: Arc<ImportStats>,
}

impl ImportStore {
    /// A store that writes to `ctrd` under `lease`, counting into `stats`.
    pub fn server(ctrd: Containerd, lease: String, stats: Arc<ImportStats>) -> ContentServer<ImportStore> {
        ContentServer::new(ImportStore { ctrd, lease, stats })
            .max_decoding_message_size(super::MAX_MESSAGE)
            .max_encoding_message_size(super::MAX_MESSAGE)
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        self.ctrd.req(msg, Some(&self.lease))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Content for ImportStore {
    async fn info(&self, r: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.ctrd.content().info(self.req(r.into_inner())).await
    }

    async fn update(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("update"))
    }

    type ListStream = BoxStream<ListContentResponse>;
    async fn list(&self, _: Request<ListContentRequest>) -> Result<Response<Self::ListStream>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn delete(&self, _: Request<DeleteContentRequest>) -> Result<Response<Empty>, Status> {
        Err(Status::permission_denied("devloop does not delete content"))
    }

    type ReadStream = BoxStream<ReadContentResponse>;
    async fn read(&self, r: Request<ReadContentRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let s = self.ctrd.content().read(self.req(r.into_inner())).await?.into_inner();
        Ok(Response::new(Box::pin(s)))
    }

    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.ctrd.content().status(self.req(r.into_inner())).await
    }

    async fn list_statuses(&self, _: Request<ListStatusesRequest>) -> Result<Response<ListStatusesResponse>, Status> {
        Err(Status::unimplemented("list_statuses"))
    }

    type WriteStream = BoxStream<WriteContentResponse>;
    async fn write(&self, r: Request<Streaming<WriteContentRequest>>) -> Result<Response<Self::WriteStream>, Status> {
        let mut incoming = r.into_inner();
        let Some(first) = incoming.next().await.transpose()? else {
            return Err(Status::invalid_argument("empty write"));
        };
        if let Opening::Check(digest) = opening(&first) {
            match self.ctrd.content().info(self.req(InfoRequest { digest: digest.clone() })).await {
                Ok(_) => {
                    // The blob may be unreferenced (left by a deleted image): hold it until the image names it.
                    self.ctrd.hold(&self.lease, "content", &digest).await.map_err(|e| Status::internal(e.to_string()))?;
                    self.stats.present.lock().expect("not poisoned").push((digest.clone(), first.total));
                    return Err(Status::already_exists(format!("content {digest}: already exists")));
                }
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(s),
            }
        }
        // Pass the write through, counting the bytes; a commit records the blob as new.
        let stats = self.stats.clone();
        let blob = (first.expected.clone(), first.total);
        let count = move |m: Result<WriteContentRequest, Status>| {
            let m = m.ok()?;
            stats.written.fetch_add(m.data.len() as u64, Ordering::Relaxed);
            if m.action == WriteAction::Commit as i32 {
                let digest = if m.expected.is_empty() { blob.0.clone() } else { m.expected.clone() };
                stats.new.lock().expect("not poisoned").push((digest, m.total.max(blob.1)));
            }
            Some(m)
        };
        let outbound = futures::stream::once(async move { Ok::<_, Status>(first) })
            .chain(incoming)
            .filter_map(move |m| std::future::ready(count(m)));
        let responses = self.ctrd.content().write(self.req(outbound)).await?.into_inner();
        Ok(Response::new(Box::pin(responses)))
    }

    async fn abort(&self, r: Request<AbortRequest>) -> Result<Response<Empty>, Status> {
        self.ctrd.content().abort(self.req(r.into_inner())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_write_is_checked_first_and_anything_else_passes_through() {
        let stat = |expected: &str| WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: "layer-sha256:ab".into(),
            total: 10,
            expected: expected.into(),
            ..Default::default()
        };
        assert_eq!(opening(&stat("sha256:ab")), Opening::Check("sha256:ab".into()));
        // Without an expected digest there is nothing to look up: containerd decides.
        assert_eq!(opening(&stat("")), Opening::Forward);
        let write = WriteContentRequest { action: WriteAction::Write as i32, data: vec![1], expected: "sha256:ab".into(), ..stat("") };
        assert_eq!(opening(&write), Opening::Forward);
    }
}

//! Auth/Credentials for the session: BuildKit asks for a registry host's credentials when it pushes or
//! pulls; we answer from Docker's config.json (running its credential helpers). Secrets never reach a log
//! line; a failing helper is an error BuildKit reports with the push, naming the helper and the host.

use bollard_buildkit_proto::moby::filesync::v1::auth_server::Auth;
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse, GetTokenAuthorityRequest,
    GetTokenAuthorityResponse, VerifyTokenAuthorityRequest, VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

use crate::registry::DockerConfig;

/// Serves credentials from `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub struct DockerAuth {
    config: DockerConfig,
}

impl DockerAuth {
    /// Reads Docker's config from the usual places; none at all means anonymous access.
    pub fn from_env() -> Self {
        DockerAuth { config: DockerConfig::load() }
    }
}

#[tonic::async_trait]
impl Auth for DockerAuth {
    async fn credentials(&self, req: Request<CredentialsRequest>) -> Result<Response<CredentialsResponse>, Status> {
        let host = req.into_inner().host;
        let creds = self.config.credentials(&host).await.map_err(|e| {
            tracing::debug!("{e}");
            // Not UNAVAILABLE: that code would read as BuildKit's connection failing, and be retried.
            Status::failed_precondition(e.to_string())
        })?;
        tracing::debug!(host, found = creds.is_some(), "registry credentials requested");
        let (username, secret) = creds.map(|c| (c.username, c.secret)).unwrap_or_default();
        Ok(Response::new(CredentialsResponse { username, secret }))
    }
    // BuildKit falls back to fetching tokens itself with the credentials above.
    async fn fetch_token(&self, _: Request<FetchTokenRequest>) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("fetch_token"))
    }
    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("get_token_authority"))
    }
    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("verify_token_authority"))
    }
}

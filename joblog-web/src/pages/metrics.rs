//! `/metrics`: the logger's Prometheus metrics (and the host's, registered on the same
//! logger): OpenMetrics text when the scraper asks for it (Prometheus does), the Prometheus
//! text format 0.0.4 otherwise.
//!
//! In the router it is one more page, behind whatever protects the router (sync-app's
//! Basic auth). [`MetricsEndpoint`] serves the same on its own for a host to mount outside
//! that protection, guarded by a bearer token instead — what a Prometheus server is
//! configured with (`authorization: {credentials: …}` in its scrape config).

use joblog::JobLogger;
use joblog::metrics::Format;
use poem::http::StatusCode;
use poem::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use poem::{Endpoint, Request, Response, handler};

use super::State;
use crate::auth::constant_time_eq;

/// The router's `/metrics`.
#[handler]
pub(crate) async fn metrics(state: State<'_>, req: &Request) -> Response {
    render(&state.logger, req).await
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the Prometheus text
/// format otherwise (`curl`, `promtool check metrics`).
async fn render(logger: &JobLogger, req: &Request) -> Response {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    Response::builder()
        .header(CONTENT_TYPE, format.content_type())
        .body(logger.encode_metrics_as(format).await)
}

/// `/metrics` on its own, for a host to mount outside its login: with a token, only a
/// request with `Authorization: Bearer <token>` gets the metrics (the token compared in
/// constant time); anything else gets `401` with `WWW-Authenticate: Bearer`. Without a
/// token it answers everyone — mount it so only where the network is trusted.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    logger: JobLogger,
    token: Option<String>,
}

impl MetricsEndpoint {
    /// The metrics of `logger`, for requests that carry `token` as a bearer token.
    #[must_use]
    pub fn new(logger: JobLogger, token: Option<String>) -> Self {
        Self { logger, token }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }
}

impl Endpoint for MetricsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if !self.authorized(&req) {
            tracing::warn!(
                remote = %req.remote_addr(),
                "joblog-web: /metrics without the right bearer token"
            );
            return Ok(Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")
                .content_type("text/plain; charset=utf-8")
                .body("401 Unauthorized: /metrics needs `Authorization: Bearer <METRICS_TOKEN>`\n"));
        }
        Ok(render(&self.logger, &req).await)
    }
}

//! One error type for every failure, and the middleware that renders it.
//!
//! Handlers return [`PageError`]; poem's own failures — an unmatched route (404), a method
//! a route does not take (405), a path, query or form value its extractor refuses (400),
//! a body too large (413) — are poem errors. [`ErrorPages`] turns every one of them into
//! the styled page (the layout, the navigation, a way back) with every security header,
//! or into `{"error": …}` for the endpoints scripts call. The router wraps its pages in
//! it; a host wraps its whole app in it so that its own unmatched routes look the same.

use std::fmt;
use std::sync::Arc;

use minijinja::context;
use poem::error::{
    MethodNotAllowedError, NotFoundError, ParseFormError, ParsePathError, ParseQueryError, ReadBodyError,
    ResponseError, SizedLimitError,
};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::WebConfig;
use crate::layout::{self, Layout};

/// A page that could not be shown, and why: the status, a message for the reader and,
/// optionally, a heading and a way back. Return it from a handler (it is a poem
/// [`ResponseError`]); [`ErrorPages`] renders it in the layout.
///
/// ```
/// use joblog_web::PageError;
/// use poem::http::StatusCode;
///
/// let e = PageError::bad_request("page must be a whole number from 1.")
///     .heading("Bad request")
///     .back_to("Open Orders", "/open_orders");
/// assert_eq!(e.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(e.to_string(), "page must be a whole number from 1.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    status: StatusCode,
    message: String,
    heading: Option<String>,
    back: Option<(String, String)>,
    json: bool,
}

impl PageError {
    /// A failure with `status`, explained to the reader by `message`.
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            heading: None,
            back: None,
            json: false,
        }
    }

    /// 400: the request asks for something that cannot be.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: refused (a form without a valid CSRF token).
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: there is no such thing.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the server failed; `message` says where to look, never the cause itself.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The page's heading (default: the status, e.g. `404 Not Found`).
    #[must_use]
    pub fn heading(mut self, heading: impl Into<String>) -> Self {
        self.heading = Some(heading.into());
        self
    }

    /// The link under the message: `Back to {label}` (default: `Back to the job logs`,
    /// the run list).
    #[must_use]
    pub fn back_to(mut self, label: impl Into<String>, href: impl Into<String>) -> Self {
        self.back = Some((label.into(), href.into()));
        self
    }

    /// Answered as JSON, `{"error": message}`, for an endpoint that scripts call.
    #[must_use]
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message for the reader.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What a failure of poem (routing, an extractor) means to the reader of `method`'s
    /// answer. A [`PageError`] inside it comes out unchanged.
    #[must_use]
    pub fn from_poem(err: poem::Error, method: &Method) -> Self {
        let err = match err.downcast::<PageError>() {
            Ok(page) => return page,
            Err(err) => err,
        };
        let status = err.status();
        let message = if err.is::<NotFoundError>() {
            "There is no page at this address.".to_owned()
        } else if err.is::<MethodNotAllowedError>() {
            format!("This address does not answer {method} requests.")
        } else if err.is::<ParsePathError>() {
            "A part of this address is not valid.".to_owned()
        } else if let Some(e) = err.downcast_ref::<ParseQueryError>() {
            // The parameter types' own messages are written for the reader; serde's own
            // (a parameter given twice, one that is not allowed) are put in words here.
            query_message(&e.to_string())
        } else if let Some(e) = err.downcast_ref::<ParseFormError>() {
            match e {
                ParseFormError::UrlDecode(e) => format!("The form could not be read: {e}"),
                _ => "The form must be sent as application/x-www-form-urlencoded.".to_owned(),
            }
        } else if let Some(e) = err.downcast_ref::<SizedLimitError>() {
            match e {
                SizedLimitError::MissingContentLength => {
                    "The form must give its length (Content-Length).".to_owned()
                }
                _ => "The form is too large.".to_owned(),
            }
        } else if err.is::<ReadBodyError>() {
            "The request's body could not be read.".to_owned()
        } else if status.is_server_error() {
            tracing::error!(error = %err, %status, "joblog-web: request failed");
            "The page could not be shown; see the server log.".to_owned()
        } else {
            status
                .canonical_reason()
                .unwrap_or("The request failed.")
                .to_owned()
        };
        Self::new(status, message)
    }

    /// The plain answer, without the layout: JSON or text, with the security headers.
    fn plain_response(&self) -> Response {
        let mut resp = if self.json {
            Response::builder()
                .content_type("application/json")
                .header("Cache-Control", "no-store")
                .body(serde_json::json!({ "error": self.message }).to_string())
        } else {
            Response::builder()
                .content_type("text/plain; charset=utf-8")
                .body(format!("{}\n", self.message))
        };
        resp.set_status(self.status);
        layout::add_security_headers(&mut resp);
        resp
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PageError {}

impl ResponseError for PageError {
    fn status(&self) -> StatusCode {
        self.status
    }

    /// Without [`ErrorPages`] around it: the message as text (or JSON), with the security
    /// headers.
    fn as_response(&self) -> Response {
        self.plain_response()
    }
}

impl From<joblog::Error> for PageError {
    fn from(e: joblog::Error) -> Self {
        tracing::error!(error = %e, "joblog-web: query failed");
        Self::internal("The log database could not be read; see the server log.")
    }
}

impl From<poem::Error> for PageError {
    /// As [`PageError::from_poem`] for a `GET`.
    fn from(err: poem::Error) -> Self {
        Self::from_poem(err, &Method::GET)
    }
}

/// Renders every failure of the endpoint it wraps — a [`PageError`], an unmatched route, a
/// wrong method, a value an extractor refuses — as the styled error page (or JSON) with
/// every security header. The run pages' router already wears it; a host wraps its whole
/// app so that its own unmatched routes get the same page:
///
/// ```
/// use joblog_web::{ErrorPages, WebConfig};
/// use poem::{Endpoint, EndpointExt, Route};
///
/// fn app(logger: joblog::JobLogger) -> impl Endpoint {
///     let config = WebConfig::default();
///     Route::new()
///         .nest("/admin/jobs", joblog_web::router(logger, config.clone()))
///         .with(ErrorPages::new(config, "/admin/jobs"))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ErrorPages {
    layout: Arc<Layout>,
    mount: String,
}

impl ErrorPages {
    /// Error pages in the layout `config` describes; `mount` is where the run pages are
    /// mounted in the app (`""` at the root): the pages' CSS and the way back live there.
    #[must_use]
    pub fn new(config: WebConfig, mount: &str) -> Self {
        Self::with_layout(Arc::new(Layout::new(config)), mount)
    }

    pub(crate) fn with_layout(layout: Arc<Layout>, mount: &str) -> Self {
        Self {
            layout,
            mount: mount.trim_end_matches('/').to_owned(),
        }
    }

    /// `error` as a page of pages mounted at `base`.
    fn render(&self, error: &PageError, base: &str) -> Response {
        if error.json {
            return error.plain_response();
        }
        let heading = error.heading.clone().unwrap_or_else(|| {
            format!(
                "{} {}",
                error.status.as_u16(),
                error.status.canonical_reason().unwrap_or("")
            )
        });
        let (back_label, back_href) = error
            .back
            .clone()
            .unwrap_or_else(|| ("the job logs".to_owned(), format!("{base}/")));
        let ctx = context! {
            heading,
            message => error.message.clone(),
            back_label,
            back_href,
        };
        match self.layout.render_str("error.html", base, ctx) {
            Ok(html) => {
                let mut resp = Response::builder()
                    .content_type("text/html; charset=utf-8")
                    .body(html);
                resp.set_status(error.status);
                layout::add_security_headers(&mut resp);
                resp
            }
            Err(e) => {
                tracing::error!(error = %e, "joblog-web: the error page failed");
                error.plain_response()
            }
        }
    }
}

impl<E: Endpoint> Middleware<E> for ErrorPages {
    type Output = ErrorPagesEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ErrorPagesEndpoint {
            inner,
            pages: self.clone(),
        }
    }
}

/// The endpoint [`ErrorPages`] wraps.
#[derive(Debug)]
pub struct ErrorPagesEndpoint<E> {
    inner: E,
    pages: ErrorPages,
}

impl<E: Endpoint> Endpoint for ErrorPagesEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let base = format!("{}{}", self.pages.mount, layout::base(&req));
        let method = req.method().clone();
        match self.inner.call(req).await {
            Ok(resp) => Ok(resp.into_response()),
            // A response a middleware chose to send as an error (a redirect, a challenge)
            // goes out as it is.
            Err(err) if err.is_from_response() => Ok(err.into_response()),
            Err(err) => Ok(self.pages.render(&PageError::from_poem(err, &method), &base)),
        }
    }
}

/// A query string refusal in words: serde's `duplicate field \`status\`` becomes
/// "The address gives `status` more than once; give it once."; other messages (the
/// parameter types' own, written for the reader) pass unchanged.
fn query_message(raw: &str) -> String {
    let field = |prefix: &str| {
        raw.find(prefix)
            .map(|at| &raw[at + prefix.len()..])
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = field("duplicate field `") {
        format!("The address gives `{name}` more than once; give it once.")
    } else if let Some(name) = field("unknown field `") {
        format!("The address has a parameter this page does not know: `{name}`.")
    } else {
        raw.to_owned()
    }
}

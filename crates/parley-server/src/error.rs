//! Every error the API answers with, and the one place it becomes an HTTP status.
//!
//! A handler or service returns [`ApiError`]; its `IntoResponse` writes
//! `{"code", "label", "message"}`. Labels are stable per cause: clients match on them.
//! Store failures map here too, and a backend failure is logged and answered 500
//! without internals.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_api::ErrorBody;
use parley_store::StoreError;

/// An error answer: status, stable label, message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    label: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, label: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            label,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: malformed or invalid input.
    pub fn bad_request(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, label, message)
    }

    /// 401: no valid access token.
    pub fn unauthorized(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, label, message)
    }

    /// 403: authenticated but not allowed, or wrong credentials.
    pub fn forbidden(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, label, message)
    }

    /// 404.
    pub fn not_found(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, label, message)
    }

    /// 409: taken.
    pub fn conflict(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, label, message)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "method not allowed here",
        )
    }

    /// 413: body too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", message)
    }

    /// 408: the request did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request-timeout", message)
    }

    /// 429: too many of something open at once.
    pub fn too_many(label: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, label, message)
    }

    /// 503: this node cannot serve now (`/v1/ready`).
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", message)
    }

    /// 503: too much work queued; try again in `retry_after` seconds.
    pub fn busy(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server-busy",
                format!("the server is busy; try again in {retry_after} seconds"),
            )
        }
    }

    /// 429: slow down.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                format!("too many attempts; try again in {retry_after} seconds"),
            )
        }
    }

    /// 500: something on our side; the cause goes to the log, not the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server-error",
            "internal server error",
        )
    }

    /// The stable label.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict("email") => {
                Self::conflict("key-exists", "an account with this e-mail address exists")
            }
            StoreError::Conflict("handle") => {
                Self::conflict("handle-exists", "this handle is taken")
            }
            StoreError::Conflict(what) => Self::conflict("conflict", format!("{what} exists")),
            StoreError::TooManyClients => Self::forbidden(
                "too-many-clients",
                "this account has the most permanent devices allowed (7); remove one first",
            ),
            StoreError::NotFound => Self::not_found("not-found", "not found"),
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::bad_request("bad-request", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request("bad-request", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("bad-request", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            label: self.label.to_owned(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// A result whose error is an API answer.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

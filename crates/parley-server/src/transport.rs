//! What one connection may take from the server: a cap on connections open at
//! once, deadlines for a request's headers and body, and the open-files limit
//! raised at start so the cap, not the operating system, is what refuses.
//!
//! A client that sends its headers or body slowly, or opens connections and sends
//! nothing, holds a socket and a task; without these bounds a few thousand of them
//! starve everyone else (slow-loris). This module knows nothing of the API: it
//! counts sockets and bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Files the server keeps for itself beyond its connections (database, logs,
/// outgoing connections to push services and the mail relay).
const RESERVED_FILES: u64 = 256;

/// Raises the soft open-files limit to the hard one where the system allows,
/// and returns how many connections fit under it.
pub(crate) fn connections_that_fit() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            1024
        }
    };
    let fit = limit.saturating_sub(RESERVED_FILES).max(16);
    tracing::info!(open_files = limit, "open-files limit");
    usize::try_from(fit).unwrap_or(usize::MAX)
}

/// Accepts a connection only while fewer than the cap are open; beyond it the
/// connection is closed at once (and a warning logged at most every 10 s).
#[derive(Clone, Debug)]
pub(crate) struct Capped {
    slots: Arc<Semaphore>,
    last_warning: Arc<AtomicI64>,
}

impl Capped {
    /// At most `max` connections at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            last_warning: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    fn refuse(&self) -> io::Error {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("connection limit reached: new connections are being closed");
        }
        io::Error::other("connection limit reached")
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for Capped {
    type Stream = Permitted<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Permitted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Permitted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            )),
            // `stream` is dropped here: the connection closes.
            Err(_) => Err(self.refuse()),
        })
    }
}

/// A connection holding one of the cap's slots until it closes.
#[derive(Debug)]
pub(crate) struct Permitted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Permitted<I> {
    fn poll_read(
        self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Permitted<I> {
    fn poll_write(
        self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What [`bounded_body`] needs: the body deadline, and the token keys and
/// clock to tell a valid access token before taking a large body.
#[derive(Clone, Debug)]
pub(crate) struct BodyRules {
    /// How long a body may take to arrive.
    pub deadline: Duration,
    /// To check an access token.
    pub tokens: std::sync::Arc<crate::tokens::TokenKeys>,
    /// The time tokens are checked at.
    pub clock: crate::clock::Clock,
}

/// Reads the whole request body before the handler runs, within the deadline
/// and [`MAX_BODY_BYTES`]: a body sent too slowly gets 408, one too large 413,
/// and both close the connection (`Connection: close`), since the rest of the
/// body is still on its way.
pub(crate) async fn bounded_body(
    axum::extract::State(rules): axum::extract::State<BodyRules>, request: Request, next: Next,
) -> Response {
    let deadline = rules.deadline;
    let (parts, body) = request.into_parts();
    // A commit bundle carries the group's whole ratchet tree and a welcome
    // entry per added device: its own, larger bound, for a caller with a
    // valid access token only (no one else makes the server hold that much).
    let authenticated = || {
        crate::routes::bearer(&parts.headers).is_some_and(|token| {
            rules
                .tokens
                .verify(token, crate::tokens::Kind::Access, rules.clock.now())
                .is_ok()
        })
    };
    let bundle = parts.uri.path() == "/v1/mls/commit-bundles";
    let limit = if bundle && authenticated() {
        crate::services::mls::groups::MAX_COMMIT_BUNDLE_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let read = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            // A client whose token expired learns why its bundle was cut.
            let hint = if bundle && limit == MAX_BODY_BYTES {
                " (a commit bundle may be larger with a valid access token)"
            } else {
                ""
            };
            return closing(ApiError::too_large(format!(
                "the request body is larger than {} KiB{hint}",
                limit / 1024
            )));
        }
        Ok(Err(_)) => {
            return closing(ApiError::bad_request(
                "bad-request",
                "the request body could not be read",
            ));
        }
        Err(_) => {
            return closing(ApiError::request_timeout(format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            )));
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

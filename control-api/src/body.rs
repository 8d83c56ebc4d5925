//! Reading request bodies: bounded in size, in time, and — for bodies that cannot be trusted
//! until they have been read (SigV4 signs the body) — in how many and how many bytes wait at
//! once.
//!
//! Invariants:
//! - a body over its limit is refused from `Content-Length` before a byte is read, and while
//!   reading when it has none (chunked);
//! - a body must arrive within `[control] body_timeout_secs`, or the request answers 408;
//! - at most [`MAX_UNVERIFIED_BODIES`] SigV4 bodies, holding at most
//!   [`UnverifiedBudget::bytes`] bytes together, are read at once; a request beyond that answers
//!   503 at once instead of waiting, so a flood of signed-looking requests cannot hold the
//!   node's memory.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Most SigV4 bodies being read at once, before their signature can be checked.
pub const MAX_UNVERIFIED_BODIES: usize = 64;
/// Bytes SigV4 bodies may hold together while they are read, at least (the budget is never
/// smaller than one largest batch).
pub const MIN_UNVERIFIED_BYTES: usize = 64 << 20;

/// The shared budget of bodies waiting for verification.
#[derive(Debug, Clone)]
pub struct UnverifiedBudget {
    bodies: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    total_bytes: usize,
}

/// Room reserved in the budget while one body is read and verified.
#[derive(Debug)]
pub struct Reservation {
    _body: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl UnverifiedBudget {
    /// A budget sized for bodies of at most `largest_body` bytes.
    pub fn new(largest_body: usize) -> Self {
        let total_bytes = MIN_UNVERIFIED_BYTES.max(largest_body);
        UnverifiedBudget {
            bodies: Arc::new(Semaphore::new(MAX_UNVERIFIED_BODIES)),
            bytes: Arc::new(Semaphore::new(total_bytes)),
            total_bytes,
        }
    }

    /// The byte budget.
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// Reserves room for a body of up to `size` bytes, or answers 503 when there is none.
    pub fn reserve(&self, size: usize) -> Result<Reservation, ApiError> {
        let busy = || {
            ApiError::new(
                503,
                "ServiceUnavailableException",
                "too many signed request bodies are being received; retry",
            )
        };
        let body = Arc::clone(&self.bodies)
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let n = u32::try_from(size.min(self.total_bytes)).map_err(|_| busy())?;
        let bytes = Arc::clone(&self.bytes)
            .try_acquire_many_owned(n)
            .map_err(|_| busy())?;
        Ok(Reservation {
            _body: body,
            _bytes: bytes,
        })
    }
}

/// The body's declared length, when it has one; 400 when it is not a number.
pub fn declared_length(req: &HttpRequest) -> Result<Option<usize>, ApiError> {
    match req.headers().get(actix_web::http::header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("Content-Length is not a number")),
    }
}

/// 413 for a body over `limit`.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "PayloadTooLargeException",
        format!("request body is over {limit} bytes"),
    )
}

/// Reads the body: at most `limit` bytes (413), within `timeout` (408).
pub async fn read(
    req: &HttpRequest,
    body: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = declared_length(req)?;
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    tokio::time::timeout(timeout, read_all(body, limit, declared.unwrap_or(0)))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                408,
                "RequestTimeoutException",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ))
        })
}

async fn read_all(
    mut body: web::Payload,
    limit: usize,
    expected: usize,
) -> Result<Bytes, ApiError> {
    let mut data = BytesMut::with_capacity(expected.min(limit));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        if data.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_count_and_bytes() {
        let b = UnverifiedBudget::new(1 << 20);
        assert_eq!(b.bytes(), MIN_UNVERIFIED_BYTES);
        let big: Vec<_> = (0..4).map(|_| b.reserve(16 << 20).expect("fits")).collect();
        assert_eq!(b.reserve(1).expect_err("bytes used up").status, 503);
        drop(big);
        let many: Vec<_> = (0..MAX_UNVERIFIED_BODIES)
            .map(|_| b.reserve(1).expect("fits"))
            .collect();
        assert_eq!(b.reserve(1).expect_err("count used up").status, 503);
        drop(many);
        b.reserve(MIN_UNVERIFIED_BYTES).expect("free again");
        assert_eq!(UnverifiedBudget::new(100 << 20).bytes(), 100 << 20);
    }
}

//! Reading request bodies from anonymous clients: how slowly a body may arrive, how many may
//! be arriving from one address, and how many bytes all bodies may hold at once. One policy for
//! every door that reads a body to run it (apps and `/v2`), applied before the request takes
//! an app's turn or an inference slot: a client that is slow to send holds nothing that other
//! clients need.
//!
//! - **Rate**: the bytes must keep coming: at most [`HttpLimits::body_idle_timeout`] between two
//!   reads (nginx's `client_body_timeout`), and the whole body within
//!   [`HttpLimits::body_read_timeout`]; else 408 `body_timeout`.
//! - **Per address**: at most [`HttpLimits::max_bodies_per_client`] bodies arriving at once from
//!   one client address; beyond it, 429 `too_many_uploads` at once.
//! - **Memory**: the bytes of every body being read or held for its request come out of one
//!   budget, [`HttpLimits::max_buffered_body_bytes`], taken as they arrive (a body that sends
//!   nothing holds nothing); beyond it, 503 `overloaded`.

use super::clients::{ClientAddr, ClientSlot, PerClient};
use super::{ApiError, HttpLimits};
use axum::body::Body;
use axum::http::Extensions;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget is counted in KiB, so a semaphore's permits cover any size.
const KIB: usize = 1024;
/// Bytes are taken from the budget this many at a time, not per chunk.
const STEP_KIB: usize = 256;

/// The body-reading policy of one gateway, shared by its routes.
#[derive(Debug)]
pub struct BodyGate {
    budget_kib: Arc<Semaphore>,
    arriving: Arc<PerClient>,
    idle: Duration,
    total: Duration,
}

/// What a body read holds until its request is done with: its bytes' share of the budget.
#[derive(Debug, Default)]
pub struct BodyHold {
    _bytes: Option<OwnedSemaphorePermit>,
}

impl BodyGate {
    pub fn new(limits: &HttpLimits) -> Self {
        BodyGate {
            budget_kib: Arc::new(Semaphore::new(limits.max_buffered_body_bytes.div_ceil(KIB))),
            arriving: PerClient::new(limits.max_bodies_per_client),
            idle: limits.body_idle_timeout,
            total: limits.body_read_timeout,
        }
    }

    /// Reads `body` (at most `limit` bytes, 413 beyond) and hands each chunk to `sink` as it
    /// arrives, under the policy above. `extensions` are the request's, which say who sent it.
    pub async fn read(
        &self,
        extensions: &Extensions,
        body: Body,
        limit: usize,
        mut sink: impl FnMut(&[u8]) -> Result<(), ApiError>,
    ) -> Result<BodyHold, ApiError> {
        let _arriving: Option<ClientSlot> = match extensions.get::<ClientAddr>() {
            Some(ClientAddr(client)) => {
                Some(self.arriving.take(*client).ok_or(ApiError::TooManyUploads(self.arriving.max()))?)
            }
            None => None,
        };
        let started = Instant::now();
        let mut body = body;
        let mut received = 0usize;
        let mut hold: Option<OwnedSemaphorePermit> = None;
        let mut held_kib = 0usize;
        loop {
            let next = Instant::now() + self.idle;
            let whole = started + self.total;
            let frame = match tokio::time::timeout_at(next.min(whole), body.frame()).await {
                Err(_) if next < whole => return Err(ApiError::BodyStalled(self.idle)),
                Err(_) => return Err(ApiError::BodyTimeout(self.total)),
                Ok(None) => break,
                Ok(Some(frame)) => {
                    frame.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?
                }
            };
            let Ok(data) = frame.into_data() else { continue };
            received = received.saturating_add(data.len());
            if received > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            let needed_kib = received.div_ceil(KIB).next_multiple_of(STEP_KIB);
            if needed_kib > held_kib {
                let more = u32::try_from(needed_kib - held_kib).map_err(|_| ApiError::Overloaded)?;
                let permit = self.budget_kib.clone().try_acquire_many_owned(more).map_err(|_| ApiError::Overloaded)?;
                match &mut hold {
                    Some(held) => held.merge(permit),
                    None => hold = Some(permit),
                }
                held_kib = needed_kib;
            }
            sink(&data)?;
        }
        Ok(BodyHold { _bytes: hold })
    }

    /// The whole body as one buffer, read as [`BodyGate::read`] reads it.
    pub async fn collect(
        &self,
        extensions: &Extensions,
        body: Body,
        limit: usize,
    ) -> Result<(bytes::Bytes, BodyHold), ApiError> {
        let mut bytes = Vec::new();
        let hold = self
            .read(extensions, body, limit, |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
        Ok((bytes.into(), hold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tests::{StalledBody, StallsAfter};

    fn limits(budget: usize) -> HttpLimits {
        HttpLimits {
            max_buffered_body_bytes: budget,
            max_bodies_per_client: 2,
            body_idle_timeout: Duration::from_millis(200),
            body_read_timeout: Duration::from_secs(5),
            ..HttpLimits::default()
        }
    }

    fn from(client: &str) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ClientAddr(client.parse().unwrap()));
        extensions
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_cut_off_and_holds_nothing_after() {
        let gate = BodyGate::new(&limits(1 << 20));
        let started = std::time::Instant::now();
        let error = gate
            .read(&from("10.0.0.1"), Body::new(StallsAfter(Some(bytes::Bytes::from_static(b"abc")))), 100, |_| Ok(()))
            .await
            .unwrap_err();
        assert!(matches!(error, ApiError::BodyStalled(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(gate.budget_kib.available_permits(), 1024, "the budget is whole again");
    }

    #[tokio::test]
    async fn one_address_may_send_only_so_many_bodies_at_once() {
        let gate = Arc::new(BodyGate::new(&limits(1 << 20)));
        let stalled: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.read(&from("10.0.0.1"), Body::new(StalledBody), 100, |_| Ok(())).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = gate.read(&from("10.0.0.1"), Body::from("x"), 100, |_| Ok(())).await.unwrap_err();
        assert!(matches!(third, ApiError::TooManyUploads(2)), "{third}");
        let mut got = Vec::new();
        gate.read(&from("10.0.0.2"), Body::from("other"), 100, |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .await
        .expect("another address is served");
        assert_eq!(got, b"other");
        for read in stalled {
            assert!(matches!(read.await.unwrap(), Err(ApiError::BodyStalled(_))));
        }
        gate.read(&from("10.0.0.1"), Body::from("x"), 100, |_| Ok(())).await.expect("its bodies are done");
    }

    #[tokio::test]
    async fn bodies_take_their_bytes_from_one_budget_while_held() {
        let gate = BodyGate::new(&limits(512 * KIB));
        let (first, hold) = gate.collect(&Extensions::new(), Body::from(vec![7u8; 300 * KIB]), 1 << 20).await.unwrap();
        assert_eq!(first.len(), 300 * KIB);
        assert_eq!(gate.budget_kib.available_permits(), 0, "two steps of 256 KiB are held");
        let refused = gate.collect(&Extensions::new(), Body::from(vec![1u8; 10]), 1 << 20).await.unwrap_err();
        assert!(matches!(refused, ApiError::Overloaded), "{refused}");
        drop(hold);
        gate.collect(&Extensions::new(), Body::from(vec![1u8; 10]), 1 << 20).await.expect("given back");
        let over = gate.collect(&Extensions::new(), Body::from(vec![1u8; 101]), 100).await.unwrap_err();
        assert!(matches!(over, ApiError::PayloadTooLarge(100)), "{over}");
    }
}

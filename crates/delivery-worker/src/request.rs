//! The outbound request of one attempt, and keeping its message alive while it runs.

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use crm_events::RowChangedEvent;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::future::Future;
use std::time::Duration;
use webhook_signing::{request_headers, RequestFacts, Signer};

/// The headers and body of an attempt (docs/contract.md §4): the payload built by crm-mapping from the event, so
/// every attempt sends the same bytes, signed with both schemes at `timestamp`, under the headers
/// `webhook_signing::request_headers` lists (crm-api shows operators the same list). The `user-agent` is the
/// client's.
pub fn outbound_request(event: &RowChangedEvent, signer: &Signer, timestamp: i64, attempt: i32) -> (HeaderMap, Bytes) {
    let body = Bytes::from(event.to_payload());
    let id = event.id.to_string();
    let signatures = signer.sign(&id, timestamp, &body);
    let facts = RequestFacts { webhook_id: &id, event_type: event.event_type.as_str(), timestamp, attempt };
    let mut headers = HeaderMap::with_capacity(12);
    for (name, value) in request_headers(&facts, &signatures) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    (headers, body)
}

/// Runs `work` (a send, or writing its record) while telling JetStream every `every` that the message is still
/// being worked on, so work slower than the ack wait is never redelivered elsewhere.
pub async fn with_progress<T, F: Future<Output = T>>(work: F, message: &jetstream::Message, every: Duration) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            outcome = &mut work => return outcome,
            _ = ticker.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
        }
    }
}

/// A random fraction in [0, 1) for jitter.
pub fn jitter() -> f64 {
    let bytes: [u8; 8] = service_common::crypto::random_bytes();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn the_request_carries_both_schemes_over_the_payload() {
        let event = RowChangedEvent::webhook_test(Uuid::now_v7());
        let key = webhook_signing::SigningKey::from_secret("a-sufficiently-long-secret").unwrap();
        let signer = Signer::new(vec![key.clone()]).unwrap();
        let (headers, body) = outbound_request(&event, &signer, 1_700_000_000, 3);
        assert_eq!(body, event.to_payload());
        assert_eq!(headers["x-crm-webhook-attempt"], "3");
        assert_eq!(headers["webhook-id"], event.id.to_string());
        let verifier = webhook_signing::Verifier::new(vec![key]);
        let get = |name: &str| headers[name].to_str().unwrap().to_owned();
        let now = 1_700_000_000;
        assert!(verifier
            .verify_crm(&get("x-crm-webhook-timestamp"), &get("x-crm-webhook-signature"), &body, now, 5)
            .is_ok());
        assert!(verifier
            .verify_standard(&get("webhook-id"), &get("webhook-timestamp"), &get("webhook-signature"), &body, now, 5)
            .is_ok());
    }
}

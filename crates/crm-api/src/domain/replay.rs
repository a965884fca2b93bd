//! What the receiver got for a past attempt, rebuilt for an operator: the body from the stored event (the same
//! function the worker sends it with, so every attempt's bytes), and the headers from the attempt's number and
//! start (the list `webhook_signing::request_headers` gives the worker), the signatures elided. Nothing here opens a
//! secret or computes a signature.

use chrono::{DateTime, Utc};
use crm_events::RowChangedEvent;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use webhook_signing::{request_headers, RequestFacts, SignatureHeaders, USER_AGENT};

/// One request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Header {
    pub name: &'static str,
    pub value: String,
}

/// The request every attempt of a delivery sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookRequest {
    /// Always `POST`.
    pub method: &'static str,
    /// The webhook's URL as configured now (the log does not keep where each attempt went); null when none is set.
    #[schema(required = true)]
    pub url: Option<String>,
    /// The raw body, exactly the bytes every attempt sends and signs (JSON as text).
    pub body: String,
}

/// The request of a delivery, from its stored event; `None` for an event this build cannot read.
pub fn request(stored_event: &[u8], url: Option<String>) -> Option<WebhookRequest> {
    let event = RowChangedEvent::from_slice(stored_event).ok()?;
    let body = String::from_utf8(event.to_payload()).ok()?;
    Some(WebhookRequest { method: "POST", url, body })
}

/// The headers attempt number `attempt` of the delivery `id` sent, started at `started_at` (its signed timestamp
/// is that second), with `sha256=<elided>` and `v1,<elided>` in place of the signatures.
pub fn attempt_headers(id: Uuid, event_type: &str, attempt: i32, started_at: DateTime<Utc>) -> Vec<Header> {
    let webhook_id = id.to_string();
    let facts = RequestFacts { webhook_id: &webhook_id, event_type, timestamp: started_at.timestamp(), attempt };
    request_headers(&facts, &SignatureHeaders::elided())
        .into_iter()
        .chain([("user-agent", USER_AGENT.to_owned())])
        .map(|(name, value)| Header { name, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuilt_request_is_what_the_worker_signs_with_the_signatures_elided() {
        let event = RowChangedEvent::webhook_test(Uuid::now_v7());
        let request = request(&event.to_bytes(), Some("https://crm.example.com/in".into())).unwrap();
        assert_eq!(request.body.as_bytes(), event.to_payload());
        assert_eq!(super::request(b"{not an event", None), None);

        let started = DateTime::parse_from_rfc3339("2026-12-10T12:00:05.999Z").unwrap().with_timezone(&Utc);
        let headers = attempt_headers(event.id, "webhook.test", 4, started);
        let get = |name: &str| headers.iter().find(|h| h.name == name).map(|h| h.value.as_str());
        assert_eq!(get("x-crm-webhook-timestamp"), Some("1796904005"));
        assert_eq!(get("webhook-timestamp"), Some("1796904005"));
        assert_eq!(get("x-crm-webhook-attempt"), Some("4"));
        assert_eq!(get("webhook-id"), Some(event.id.to_string().as_str()));
        assert_eq!(get("x-crm-webhook-signature"), Some("sha256=<elided>"));
        assert_eq!(get("webhook-signature"), Some("v1,<elided>"));
        assert_eq!(get("user-agent"), Some(USER_AGENT));
    }
}

//! The headers of one webhook request, written once: the worker sends exactly these (with the signatures it
//! computed), and crm-api shows an operator the same list for a past attempt, with the signatures elided
//! ([`SignatureHeaders::elided`]), so what the console shows can never drift from what the receiver got.

use crate::{
    SignatureHeaders, CRM_SIGNATURE_HEADER, CRM_SIGNATURE_PREFIX, CRM_TIMESTAMP_HEADER, STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER, STANDARD_SIGNATURE_VERSION, STANDARD_TIMESTAMP_HEADER,
};

/// The `user-agent` of every webhook request: `crm-webhook/<version>`.
pub const USER_AGENT: &str = concat!("crm-webhook/", env!("CARGO_PKG_VERSION"));

/// Header carrying the event id (the webhook id) for the crm scheme.
pub const CRM_ID_HEADER: &str = "x-crm-webhook-id";
/// Header carrying the event type.
pub const CRM_EVENT_HEADER: &str = "x-crm-webhook-event";
/// Header carrying the attempt number (1, 2, 3, …; it continues across a redelivery).
pub const CRM_ATTEMPT_HEADER: &str = "x-crm-webhook-attempt";

/// What an attempt's headers are made of.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The event id: the webhook id, the same on every attempt.
    pub webhook_id: &'a str,
    pub event_type: &'a str,
    /// Unix seconds at send time, as signed.
    pub timestamp: i64,
    pub attempt: i32,
}

/// The request headers of one attempt, in the order they are documented (docs/contract.md §4), `user-agent`
/// aside: the HTTP client sets that one ([`USER_AGENT`]).
pub fn request_headers(facts: &RequestFacts<'_>, signatures: &SignatureHeaders) -> Vec<(&'static str, String)> {
    let ts = facts.timestamp.to_string();
    vec![
        ("content-type", "application/json".to_owned()),
        (CRM_ID_HEADER, facts.webhook_id.to_owned()),
        (CRM_EVENT_HEADER, facts.event_type.to_owned()),
        (CRM_TIMESTAMP_HEADER, ts.clone()),
        (CRM_SIGNATURE_HEADER, signatures.crm_signature.clone()),
        (CRM_ATTEMPT_HEADER, facts.attempt.to_string()),
        (STANDARD_ID_HEADER, facts.webhook_id.to_owned()),
        (STANDARD_TIMESTAMP_HEADER, ts),
        (STANDARD_SIGNATURE_HEADER, signatures.standard_signature.clone()),
    ]
}

/// What an elided signature shows instead of the MAC.
const ELIDED: &str = "<elided>";

impl SignatureHeaders {
    /// Placeholders in the shape of each scheme's header (`sha256=<elided>`, `v1,<elided>`): what an operator is
    /// shown of a past attempt's signatures. Nothing is computed, so no secret is needed or revealed.
    pub fn elided() -> Self {
        SignatureHeaders {
            crm_signature: format!("{CRM_SIGNATURE_PREFIX}{ELIDED}"),
            standard_signature: format!("{STANDARD_SIGNATURE_VERSION},{ELIDED}"),
        }
    }
}

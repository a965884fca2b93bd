//! What happens to one message: decide whether to send, send, record, and answer JetStream.
//!
//! Every path ends in exactly one of ack (done), NAK with a delay (try again later) or term (never again), and
//! the delivery log is written before the answer, so a crash between the two repeats an answer rather than losing
//! an outcome. Hand-backs that are not attempts (a workspace at its in-flight limit, a paused endpoint, another
//! worker holding the delivery, shutdown) write no attempt, so they do not spend the retry budget.
//!
//! The one exception to "log first" is an attempt the receiver accepted whose record cannot be written: it is
//! written again and again rather than answered with a NAK that would send the webhook a second time, and if the
//! worker has to stop first, the message is acknowledged and the log lags (`record_attempt`).

use crate::fairness::{Admission, Breakers, Slots};
use crate::metrics::WorkerMetrics;
use crate::retry::{Decision, RetryPolicy};
use crate::sender::{SendOutcome, Sender};
use crate::settings::{SettingsCache, Webhook};
use crate::store::{self, AttemptRecord, Claim, RecordError, Recorder};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use crm_db::{DeliveryStatus, SkipReason};
use crm_events::{EventType, RowChangedEvent};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a pause after a database error lasts before the message comes back.
const DB_RETRY: Duration = Duration::from_secs(2);
/// The first pause before writing an attempt record again; it doubles up to [`DB_RETRY`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// How often the record of an attempt the receiver did not accept is tried before the message is handed back.
const RECORD_TRIES_NOT_ACCEPTED: u32 = 3;

/// Everything a delivery needs, shared by all tasks of a worker.
pub struct Ctx {
    /// Durable commits: attempt records and webhook changes.
    pub pool: PgPool,
    /// Asynchronous commits: claims, skips and lease releases, which are redone if a crash loses them.
    pub fast_pool: PgPool,
    /// Writes attempt records in batches, durably.
    pub recorder: Recorder,
    pub settings: SettingsCache,
    pub sender: Sender,
    pub retry: RetryPolicy,
    pub slots: Slots,
    pub breakers: Breakers,
    pub metrics: WorkerMetrics,
    pub ack_wait: Duration,
    /// How long a claim keeps other workers off a delivery: a little longer than one request can take, so a
    /// copy of the message cannot be sent twice at once, yet short enough that a dead worker's deliveries are
    /// free again by the time JetStream redelivers them.
    pub lease: Duration,
    /// Cancelled when the shutdown grace period is over: deliveries still sending are abandoned and handed back.
    pub hard_stop: CancellationToken,
    pub user_agent: HeaderValue,
}

/// JetStream's answer for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    Nak(Duration),
    Term,
}

/// Processes one message and answers JetStream. The delivery's span continues the trace the message carries
/// (`traceparent` from the relay's publish), so a trace runs from the API request to each attempt.
pub async fn handle(ctx: &Ctx, message: jetstream::Message) {
    let span = tracing::info_span!(
        "webhook.delivery",
        event_id = tracing::field::Empty,
        workspace_id = tracing::field::Empty,
        attempt = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    service_common::trace::set_parent(&span, |name| {
        message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
    });
    let verdict = tracing::Instrument::instrument(process(ctx, &message), span).await;
    let answer = match verdict {
        Verdict::Ack => message.ack().await,
        Verdict::Nak(delay) if delay.is_zero() => message.ack_with(AckKind::Nak(None)).await,
        Verdict::Nak(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Verdict::Term => message.ack_with(AckKind::Term).await,
    };
    if let Err(e) = answer {
        // The message comes back after the ack wait; the delivery log already holds the outcome.
        tracing::warn!(error = %e, ?verdict, "could not answer JetStream");
    }
}

/// A random fraction in [0, 1) for jitter.
fn jitter() -> f64 {
    let bytes: [u8; 8] = service_common::crypto::random_bytes();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A short, jittered hand-back delay, so held-back messages do not return in lockstep.
fn hold_back_delay(base: Duration) -> Duration {
    base + base.mul_f64(jitter())
}

/// Why an event is not sent at all, if it is not.
fn skip_reason(event: &RowChangedEvent, webhook: Option<&Webhook>) -> Option<SkipReason> {
    let Some(webhook) = webhook else { return Some(SkipReason::NotConfigured) };
    if webhook.url.is_none() || webhook.signer.is_none() {
        return Some(SkipReason::NoUrlOrSecret);
    }
    // A test event is sent whenever there is somewhere to send it, so a webhook can be tried before it is enabled.
    if event.event_type == EventType::WebhookTest {
        return None;
    }
    if !webhook.enabled {
        return Some(SkipReason::Disabled);
    }
    if !webhook.subscribes(event.event_type.as_str()) {
        return Some(SkipReason::NotSubscribed);
    }
    None
}

async fn process(ctx: &Ctx, message: &jetstream::Message) -> Verdict {
    let event = match RowChangedEvent::from_slice(&message.payload) {
        Ok(event) => event,
        Err(e) => {
            // A body this build cannot read never will be: stop it rather than loop on it.
            tracing::error!(error = %e, subject = %message.subject, "undecodable event; terminating the message");
            return Verdict::Term;
        }
    };
    let span = tracing::Span::current();
    span.record("event_id", tracing::field::display(event.id));
    span.record("workspace_id", tracing::field::display(event.workspace_id));
    let ws = event.workspace_id;

    let webhook = match ctx.settings.get(ws).await {
        Ok(webhook) => webhook,
        Err(e) => {
            tracing::warn!(error = %e, "settings unavailable; handing the message back");
            return Verdict::Nak(DB_RETRY);
        }
    };
    if let Some(reason) = skip_reason(&event, webhook.as_deref()) {
        return match store::skip(&ctx.fast_pool, &event, &message.payload, reason).await {
            Ok(()) => {
                ctx.metrics.count("skipped");
                span.record("outcome", "skipped");
                Verdict::Ack
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording a skip failed; handing the message back");
                Verdict::Nak(DB_RETRY)
            }
        };
    }
    let Some(webhook) = webhook else { return Verdict::Nak(DB_RETRY) };
    let (Some(url), Some(signer)) = (webhook.url.as_deref(), webhook.signer.as_ref()) else {
        return Verdict::Nak(DB_RETRY);
    };

    let Some(_slot) = ctx.slots.try_take(ws) else {
        ctx.metrics.hold_back("workspace_limit");
        return Verdict::Nak(hold_back_delay(Duration::from_millis(200)));
    };
    let admission = ctx.breakers.admit(ws);
    if let Admission::Paused(remaining) = admission {
        ctx.metrics.hold_back("endpoint_paused");
        return Verdict::Nak(remaining + hold_back_delay(Duration::from_millis(100)));
    }
    let abandon_probe = || {
        if admission == Admission::Probe {
            ctx.breakers.probe_abandoned(ws);
        }
    };

    let (attempts, budget_start) = match store::claim(&ctx.fast_pool, &event, &message.payload, ctx.lease).await {
        Ok(Claim::Ready { attempts, budget_start }) => (attempts, budget_start),
        Ok(Claim::Ended) => {
            abandon_probe();
            ctx.metrics.duplicates_suppressed.inc();
            span.record("outcome", "already_ended");
            return Verdict::Ack;
        }
        Ok(Claim::Leased) => {
            abandon_probe();
            ctx.metrics.hold_back("leased");
            return Verdict::Nak(hold_back_delay(Duration::from_secs(1)));
        }
        Err(e) => {
            abandon_probe();
            tracing::warn!(error = %e, "claiming the delivery failed; handing the message back");
            return Verdict::Nak(DB_RETRY);
        }
    };
    let attempt = attempts.saturating_add(1);
    span.record("attempt", attempt);

    let body = bytes::Bytes::from(event.to_payload());
    let timestamp = Utc::now().timestamp();
    let id = event.id.to_string();
    let signatures = signer.sign(&id, timestamp, &body);
    let headers = request_headers(ctx, &event, &id, timestamp, attempt, &signatures);

    let started_at = Utc::now();
    ctx.metrics.in_flight.inc();
    let sent = tokio::select! {
        outcome = tracing::Instrument::instrument(
            with_progress(ctx.sender.send(url, headers, body), message, ctx.ack_wait / 3),
            tracing::info_span!("webhook.attempt", attempt),
        ) => Some(outcome),
        _ = ctx.hard_stop.cancelled() => None,
    };
    ctx.metrics.in_flight.dec();
    let Some(outcome) = sent else {
        // Shutdown grace is over: this attempt is abandoned, not counted; another worker will send it.
        abandon_probe();
        let _ = store::release(&ctx.fast_pool, event.id).await;
        ctx.metrics.hold_back("shutdown");
        return Verdict::Nak(Duration::ZERO);
    };

    // The retry budget counts from the last redelivery; the attempt number on the wire and in the log does not.
    let budget_attempt = u32::try_from(attempt - budget_start).unwrap_or(1).max(1);
    let decision = ctx.retry.decide(&outcome, budget_attempt, jitter());
    let (status_code, excerpt, duration) = match &outcome {
        SendOutcome::Response { status, excerpt, duration, .. } => (Some(*status), Some(excerpt.clone()), *duration),
        SendOutcome::Blocked { duration, .. }
        | SendOutcome::Timeout { duration }
        | SendOutcome::Network { duration, .. } => (None, None, *duration),
    };
    let (status, verdict, error, outcome_label) = match &decision {
        Decision::Success => (DeliveryStatus::Succeeded, Verdict::Ack, None, "succeeded"),
        Decision::Retry { after, reason } => {
            (DeliveryStatus::Retrying, Verdict::Nak(*after), Some(reason.clone()), "retrying")
        }
        Decision::Failed { reason, .. } => (DeliveryStatus::Failed, Verdict::Term, Some(reason.clone()), "failed"),
        Decision::Dead { reason } => (DeliveryStatus::Dead, Verdict::Term, Some(reason.clone()), "dead"),
    };
    let next_attempt_at = match &decision {
        Decision::Retry { after, .. } => chrono::Duration::from_std(*after).ok().map(|d| Utc::now() + d),
        _ => None,
    };
    let record = AttemptRecord {
        delivery_id: event.id,
        attempt,
        started_at,
        duration,
        status_code,
        error,
        excerpt,
        status,
        next_attempt_at,
    };
    // A gone endpoint: turn the webhook off before the delivery shows as failed, so whoever reads the log sees
    // the settings already say why.
    if let Decision::Failed { disable_webhook: true, .. } = &decision {
        let reason =
            format!("endpoint answered 410 Gone at {}; webhook disabled", crm_mapping::format_timestamp(&Utc::now()));
        match store::disable_webhook(&ctx.pool, ws, &reason).await {
            Ok(()) => {
                ctx.settings.invalidate(ws);
                tracing::warn!("endpoint is gone; webhook disabled");
            }
            Err(e) => tracing::error!(error = %e, "could not disable the webhook after 410 Gone"),
        }
    }
    let accepted = matches!(decision, Decision::Success);
    if record_attempt(ctx, message, record, accepted).await == Logged::HandBack {
        abandon_probe();
        return Verdict::Nak(DB_RETRY);
    }

    match &decision {
        Decision::Retry { .. } | Decision::Dead { .. } => {
            if ctx.breakers.failed(ws) {
                tracing::warn!("endpoint paused after repeated failures");
            }
        }
        Decision::Success | Decision::Failed { .. } => ctx.breakers.succeeded(ws),
    }
    if matches!(decision, Decision::Retry { .. }) {
        ctx.metrics.retries_scheduled.inc();
    }
    ctx.metrics.count(outcome_label);
    ctx.metrics
        .attempt_duration
        .get_or_create(&crate::metrics::OutcomeLabel { outcome: outcome_label })
        .observe(duration.as_secs_f64());
    span.record("outcome", outcome_label);
    tracing::debug!(?status_code, "attempt recorded");
    verdict
}

/// What became of an attempt's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logged {
    /// In the delivery log.
    Written,
    /// Not in the log, and this worker gives up on it; the decision stands all the same, so a webhook the receiver
    /// accepted is never sent again because the log could not take it.
    Lagging,
    /// Not in the log: hand the message back, so the attempt is made, and recorded, again.
    HandBack,
}

/// Writes the attempt to the delivery log, keeping the message ours (in-progress acks) while it tries.
///
/// After a send the receiver `accepted`, sending again is the one thing a failed write must not cause: the write is
/// retried with a bounded backoff until it goes through or the worker's hard stop fires, and then the decision
/// stands anyway (the message is acknowledged; the log lags, the delivery staying `pending`). An attempt the
/// receiver did not accept is tried [`RECORD_TRIES_NOT_ACCEPTED`] times, then handed back: sending it again gives
/// the receiver nothing it has not already refused. A record the database refuses outright will not go in later
/// either: the decision stands.
async fn record_attempt(ctx: &Ctx, message: &jetstream::Message, record: AttemptRecord, accepted: bool) -> Logged {
    let keep_trying = async {
        let mut pause = RECORD_RETRY_FIRST;
        let mut tries = 0u32;
        loop {
            tries = tries.saturating_add(1);
            match ctx.recorder.record(record.clone()).await {
                Ok(()) => return Logged::Written,
                Err(RecordError::Refused(e)) => {
                    tracing::error!(error = %e, accepted, "the delivery log refused the attempt; it stays unrecorded");
                    return Logged::Lagging;
                }
                Err(RecordError::Unavailable(e)) if !accepted && tries >= RECORD_TRIES_NOT_ACCEPTED => {
                    tracing::warn!(error = %e, "recording the attempt failed; handing the message back");
                    return Logged::HandBack;
                }
                Err(RecordError::Unavailable(e)) => {
                    tracing::warn!(error = %e, tries, accepted, "recording the attempt failed; trying again");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(DB_RETRY);
        }
    };
    tokio::select! {
        // Writing first: even when the hard stop has fired already, the record is handed to the recorder, which may
        // still get it in.
        biased;
        logged = with_progress(keep_trying, message, ctx.ack_wait / 3) => logged,
        _ = ctx.hard_stop.cancelled() => {
            if accepted {
                tracing::warn!("stopping with an accepted webhook unrecorded; acknowledging it, the delivery log lags");
                Logged::Lagging
            } else {
                Logged::HandBack
            }
        }
    }
}

fn request_headers(
    ctx: &Ctx,
    event: &RowChangedEvent,
    id: &str,
    timestamp: i64,
    attempt: i32,
    signatures: &webhook_signing::SignatureHeaders,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(12);
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    let ts = timestamp.to_string();
    put("content-type", "application/json");
    put("x-crm-webhook-id", id);
    put("x-crm-webhook-event", event.event_type.as_str());
    put("x-crm-webhook-timestamp", &ts);
    put("x-crm-webhook-signature", &signatures.crm_signature);
    put("x-crm-webhook-attempt", &attempt.to_string());
    put("webhook-id", id);
    put("webhook-timestamp", &ts);
    put("webhook-signature", &signatures.standard_signature);
    headers.insert(reqwest::header::USER_AGENT, ctx.user_agent.clone());
    headers
}

/// Runs `work` (a send, or writing its record) while telling JetStream every `every` that the message is still
/// being worked on, so work slower than the ack wait is never redelivered elsewhere.
async fn with_progress<T, F: Future<Output = T>>(work: F, message: &jetstream::Message, every: Duration) -> T {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crm_events::{Trigger, EVENT_SCHEMA_VERSION};
    use uuid::Uuid;

    fn event(event_type: EventType) -> RowChangedEvent {
        RowChangedEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            id: Uuid::now_v7(),
            event_type,
            occurred_at: Utc::now(),
            workspace_id: Uuid::now_v7(),
            trigger: Trigger::Test,
            row: None,
            changed_fields: vec![],
            previous: Default::default(),
        }
    }

    fn webhook(enabled: bool, events: &[&str]) -> Webhook {
        let key = webhook_signing::SigningKey::from_secret("a-sufficiently-long-secret").unwrap();
        Webhook {
            enabled,
            url: Some("https://crm.example.com/in".into()),
            events: events.iter().map(|e| e.to_string()).collect(),
            signer: webhook_signing::Signer::new(vec![key]).ok(),
        }
    }

    #[test]
    fn skips_follow_the_settings() {
        let created = event(EventType::RowCreated);
        assert_eq!(skip_reason(&created, None), Some(SkipReason::NotConfigured));
        assert_eq!(skip_reason(&created, Some(&webhook(false, &["crm_row.created"]))), Some(SkipReason::Disabled));
        assert_eq!(skip_reason(&created, Some(&webhook(true, &["crm_row.updated"]))), Some(SkipReason::NotSubscribed));
        assert_eq!(skip_reason(&created, Some(&webhook(true, &["crm_row.created"]))), None);
        let test = event(EventType::WebhookTest);
        assert_eq!(skip_reason(&test, Some(&webhook(false, &[]))), None, "a test is sent to a disabled webhook");
        let mut no_secret = webhook(true, &["crm_row.created"]);
        no_secret.signer = None;
        assert_eq!(skip_reason(&test, Some(&no_secret)), Some(SkipReason::NoUrlOrSecret));
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}

//! What happens to one message: decide whether to send, send, record, and answer JetStream.
//!
//! The scheduler ([`crate::scheduler`]) has decided that this delivery may go to its endpoint now. It goes through
//! named steps, each returning what the next one needs or the message's final answer: [`decode`] the event, find
//! its [`target`] (or record why it is skipped), [`claim`] it in the delivery log, [`attempt`] the request,
//! [`conclude`] what the answer means, and [`settle`] it: record the attempt and count it. What the endpoint's
//! answer says about the endpoint (how fast, how healthy) goes back to the scheduler as [`Feedback`] as soon as the
//! answer is in, which frees the delivery's slot for the next one while this one records its attempt ([`Hold`]).
//!
//! Every path ends in exactly one of ack (done), NAK with a delay (try again later) or term (never again), and
//! the delivery log is written before the answer, so a crash between the two repeats an answer rather than losing
//! an outcome. Hand-backs that are not attempts (another worker holding the delivery, shutdown) write no attempt,
//! so they do not spend the retry budget.
//!
//! The one exception to "log first" is an attempt the receiver accepted whose record cannot be written: it is
//! written again and again rather than answered with a NAK that would send the webhook a second time, and if the
//! worker has to stop first, the message is acknowledged and the log lags ([`record_attempt`]).

use crate::consumer::Hold;
use crate::metrics::{HoldBack, WorkerMetrics};
use crate::request::{jitter, outbound_request, with_progress};
use crate::retry::{Decision, RetryPolicy};
use crate::scheduler::Feedback;
use crate::sender::{SendOutcome, Sender};
use crate::settings::{SettingsCache, Webhook};
use crate::store::{self, AttemptRecord, Claim, ClaimRequest, Claimer, RecordError, Recorder, SkipRecord, Skipper};
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use crm_db::{DeliveryStatus, SkipReason};
use crm_events::{EventType, RowChangedEvent};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a pause after a database error lasts before the message comes back.
const DB_RETRY: Duration = Duration::from_secs(2);
/// The first pause before writing an attempt record again; it doubles up to [`DB_RETRY`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// How often the record of an attempt the receiver did not accept is tried before the message is handed back.
const RECORD_TRIES_NOT_ACCEPTED: u32 = 3;

/// Everything a delivery needs, shared by all tasks of a worker.
pub struct Ctx {
    /// Durable commits: webhook changes.
    pub pool: PgPool,
    /// Asynchronous commits: claims and lease releases, which only repeat work if a crash loses them (a claim
    /// lost is taken again when the message comes back).
    pub fast_pool: PgPool,
    /// Writes attempt records in batches, durably.
    pub recorder: Recorder,
    /// Writes skips in batches, durably.
    pub skipper: Skipper,
    /// Claims deliveries in batches.
    pub claimer: Claimer,
    pub settings: SettingsCache,
    pub sender: Sender,
    pub retry: RetryPolicy,
    pub metrics: WorkerMetrics,
    pub ack_wait: Duration,
    /// How long a claim keeps other workers off a delivery: a little longer than one request can take, so a
    /// copy of the message cannot be sent twice at once, yet short enough that a dead worker's deliveries are
    /// free again by the time JetStream redelivers them.
    pub lease: Duration,
    /// Cancelled when the shutdown grace period is over: deliveries still sending are abandoned and handed back.
    pub hard_stop: CancellationToken,
}

/// JetStream's answer for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    Nak(Duration),
    Term,
}

/// Processes one message and answers JetStream; tells `hold` what the attempt taught about the endpoint once the
/// answer is in. The delivery's span continues the trace the message carries (`traceparent` from the relay's
/// publish), so a trace runs from the API request to each attempt.
pub async fn handle(ctx: &Ctx, message: jetstream::Message, mut hold: Hold) {
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
    let verdict =
        tracing::Instrument::instrument(deliver(ctx, &message, &mut hold), span).await.unwrap_or_else(|early| early);
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

/// The steps of one delivery. `Err` is an answer given before an attempt was made.
async fn deliver(ctx: &Ctx, message: &jetstream::Message, hold: &mut Hold) -> Result<Verdict, Verdict> {
    let event = match decode(message) {
        Ok(event) => Arc::new(event),
        Err(reason) => return Err(stop_undecodable(ctx, message, &reason).await),
    };
    let span = tracing::Span::current();
    span.record("event_id", tracing::field::display(event.id));
    span.record("workspace_id", tracing::field::display(event.workspace_id));
    let target = target(ctx, &event, &message.payload).await?;
    let claimed = claim(ctx, &event, &message.payload).await?;
    span.record("attempt", claimed.attempt);
    let Some(attempted) = attempt(ctx, message, &event, &target, claimed.attempt).await else {
        // Shutdown grace is over: this attempt is abandoned, not counted; another worker will send it.
        ctx.metrics.hold_back(HoldBack::Shutdown);
        let _ = store::release(&ctx.fast_pool, event.id).await;
        return Err(Verdict::Nak(Duration::ZERO));
    };
    let concluded = conclude(ctx, &event, &claimed, attempted);
    let feedback = concluded.feedback;
    // The slot is free for the next delivery while this one records its attempt; but after 410 Gone only once the
    // webhook is off, so the endpoint's next queued delivery is skipped rather than sent to it again.
    let disables = matches!(concluded.decision, Decision::Failed { disable_webhook: true, .. });
    if !disables {
        hold.release(feedback);
    }
    let verdict = settle(ctx, message, &event, concluded).await;
    hold.release(feedback);
    Ok(verdict)
}

/// Step 1: the event. A body this build cannot read never will be: it is stopped rather than looped on.
fn decode(message: &jetstream::Message) -> Result<RowChangedEvent, String> {
    RowChangedEvent::from_slice(&message.payload).map_err(|e| e.to_string())
}

/// The message id the relay published with: the event id.
fn message_id(message: &jetstream::Message) -> Option<Uuid> {
    let headers = message.headers.as_ref()?;
    headers.get(async_nats::header::NATS_MESSAGE_ID)?.as_str().parse().ok()
}

/// Ends an undecodable event: its delivery (found by the message id, which is the event id, when crm-api created
/// one) is marked failed with the reason, so it does not stay pending for ever, and the message is terminated.
async fn stop_undecodable(ctx: &Ctx, message: &jetstream::Message, reason: &str) -> Verdict {
    tracing::error!(error = %reason, subject = %message.subject, "undecodable event; terminating the message");
    let Some(id) = message_id(message) else { return Verdict::Term };
    match store::fail_undecodable(&ctx.fast_pool, id, &format!("undecodable event: {reason}")).await {
        Ok(()) => {
            ctx.metrics.count(DeliveryStatus::Failed);
            Verdict::Term
        }
        Err(e) => {
            tracing::warn!(error = %e, "recording an undecodable event failed; handing the message back");
            Verdict::Nak(DB_RETRY)
        }
    }
}

/// Where a delivery goes, and how it is signed: a webhook with both a URL and a secret.
struct Target {
    webhook: Arc<Webhook>,
}

impl Target {
    fn url(&self) -> &str {
        self.webhook.url.as_deref().unwrap_or_default()
    }
}

/// Step 2: the workspace's webhook, or the skip of an event that is not to be sent (recorded, then acked).
async fn target(ctx: &Ctx, event: &RowChangedEvent, raw: &[u8]) -> Result<Target, Verdict> {
    let webhook = ctx.settings.get(event.workspace_id).await.map_err(|e| {
        tracing::warn!(error = %e, "settings unavailable; handing the message back");
        Verdict::Nak(DB_RETRY)
    })?;
    if let Some(reason) = skip_reason(event, webhook.as_deref()) {
        return Err(match ctx.skipper.skip(SkipRecord::of(event, raw, reason)).await {
            Ok(()) => {
                ctx.metrics.count(DeliveryStatus::Skipped);
                tracing::Span::current().record("outcome", DeliveryStatus::Skipped.as_str());
                Verdict::Ack
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording a skip failed; handing the message back");
                Verdict::Nak(DB_RETRY)
            }
        });
    }
    match webhook {
        Some(webhook) if webhook.url.is_some() && webhook.signer.is_some() => Ok(Target { webhook }),
        // skip_reason has said why already; this only keeps the types honest.
        _ => Err(Verdict::Nak(DB_RETRY)),
    }
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

/// A short, jittered hand-back delay, so held-back messages do not return in lockstep.
fn hold_back_delay(base: Duration) -> Duration {
    base + base.mul_f64(jitter())
}

/// A delivery this worker holds the lease on.
struct Claimed {
    /// The attempt about to be made, as the receiver sees it (it continues across a redelivery).
    attempt: i32,
    /// The same attempt counted from the last redelivery, which is what the retry budget is spent against.
    budget_attempt: u32,
}

/// Step 3: the send-log guard. An ended delivery is acked unsent; one another worker is sending is handed back.
async fn claim(ctx: &Ctx, event: &Arc<RowChangedEvent>, raw: &bytes::Bytes) -> Result<Claimed, Verdict> {
    match ctx.claimer.claim(ClaimRequest { event: Arc::clone(event), raw: raw.clone() }).await {
        Ok(Claim::Ready { attempts, budget_start }) => {
            let attempt = attempts.saturating_add(1);
            Ok(Claimed { attempt, budget_attempt: u32::try_from(attempt - budget_start).unwrap_or(1).max(1) })
        }
        Ok(Claim::Ended) => {
            ctx.metrics.duplicates_suppressed.inc();
            tracing::Span::current().record("outcome", "already_ended");
            Err(Verdict::Ack)
        }
        Ok(Claim::Leased) => {
            ctx.metrics.hold_back(HoldBack::Leased);
            Err(Verdict::Nak(hold_back_delay(Duration::from_secs(1))))
        }
        Err(e) => {
            tracing::warn!(error = %e, "claiming the delivery failed; handing the message back");
            Err(Verdict::Nak(DB_RETRY))
        }
    }
}

/// One request made, and what came of it.
struct Attempted {
    started_at: DateTime<Utc>,
    outcome: SendOutcome,
}

/// Step 4: sign and send, keeping the message ours with in-progress acks while the request runs. `None` when the
/// worker's hard stop came first.
async fn attempt(
    ctx: &Ctx,
    message: &jetstream::Message,
    event: &RowChangedEvent,
    target: &Target,
    attempt: i32,
) -> Option<Attempted> {
    let signer = target.webhook.signer.as_ref()?;
    // The signed timestamp is the recorded start's second, so crm-api can show the headers the receiver got.
    let started_at = Utc::now();
    let (headers, body) = outbound_request(event, signer, started_at.timestamp(), attempt);
    ctx.metrics.in_flight.inc();
    let sent = tokio::select! {
        outcome = tracing::Instrument::instrument(
            with_progress(ctx.sender.send(target.url(), headers, body), message, ctx.ack_wait / 3),
            tracing::info_span!("webhook.attempt", attempt),
        ) => Some(outcome),
        _ = ctx.hard_stop.cancelled() => None,
    };
    ctx.metrics.in_flight.dec();
    sent.map(|outcome| Attempted { started_at, outcome })
}

/// What an attempt means: the decision, the record that says so, JetStream's answer, and what it says about the
/// endpoint.
struct Concluded {
    decision: Decision,
    record: AttemptRecord,
    verdict: Verdict,
    feedback: Feedback,
}

/// Step 5: the retry policy's decision on the answer, and the record of the attempt.
fn conclude(ctx: &Ctx, event: &RowChangedEvent, claimed: &Claimed, attempted: Attempted) -> Concluded {
    let Attempted { started_at, outcome } = attempted;
    let decision = ctx.retry.decide(&outcome, claimed.budget_attempt, jitter());
    let (status_code, excerpt) = match &outcome {
        SendOutcome::Response { status, excerpt, .. } => (Some(*status), Some(excerpt.clone())),
        _ => (None, None),
    };
    let (status, verdict, error) = match &decision {
        Decision::Success => (DeliveryStatus::Succeeded, Verdict::Ack, None),
        Decision::Retry { after, reason } => (DeliveryStatus::Retrying, Verdict::Nak(*after), Some(reason.clone())),
        Decision::Failed { reason, .. } => (DeliveryStatus::Failed, Verdict::Term, Some(reason.clone())),
        Decision::Dead { reason } => (DeliveryStatus::Dead, Verdict::Term, Some(reason.clone())),
    };
    let next_attempt_at = match &decision {
        Decision::Retry { after, .. } => chrono::Duration::from_std(*after).ok().map(|d| Utc::now() + d),
        _ => None,
    };
    let took = outcome.duration();
    let feedback = match &decision {
        Decision::Success | Decision::Failed { .. } => Feedback::Settled(took),
        Decision::Retry { .. } | Decision::Dead { .. } => {
            let (overloaded, retry_after) = match &outcome {
                SendOutcome::Response { status, retry_after, .. } => (*status >= 500 || *status == 429, *retry_after),
                SendOutcome::Timeout { .. } | SendOutcome::Network { .. } | SendOutcome::Blocked { .. } => (true, None),
            };
            Feedback::Retryable { took, overloaded, retry_after }
        }
    };
    let record = AttemptRecord {
        delivery_id: event.id,
        attempt: claimed.attempt,
        started_at,
        duration: took,
        status_code,
        error,
        excerpt,
        status,
        next_attempt_at,
    };
    Concluded { decision, record, verdict, feedback }
}

/// Step 6: the attempt's consequences. A gone endpoint turns the webhook off (before the delivery shows as
/// failed, so whoever reads the log sees the settings already say why); the attempt is recorded and counted.
async fn settle(ctx: &Ctx, message: &jetstream::Message, event: &RowChangedEvent, concluded: Concluded) -> Verdict {
    let Concluded { decision, record, verdict, .. } = concluded;
    let ws = event.workspace_id;
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
    let (status, duration) = (record.status, record.duration);
    if record_attempt(ctx, message, record, matches!(decision, Decision::Success)).await == Logged::HandBack {
        return Verdict::Nak(DB_RETRY);
    }
    if matches!(decision, Decision::Retry { .. }) {
        ctx.metrics.retries_scheduled.inc();
    }
    ctx.metrics.count(status);
    ctx.metrics.observe_attempt(status, duration);
    tracing::Span::current().record("outcome", status.as_str());
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
        let mut backoff = service_common::backoff::Backoff::new(RECORD_RETRY_FIRST, DB_RETRY);
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
            tokio::time::sleep(backoff.next_pause()).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(event_type: EventType) -> RowChangedEvent {
        RowChangedEvent { event_type, ..RowChangedEvent::webhook_test(Uuid::now_v7()) }
    }

    fn webhook(enabled: bool, events: &[&str]) -> Webhook {
        let key = webhook_signing::SigningKey::from_secret("a-sufficiently-long-secret").unwrap();
        Webhook {
            enabled,
            url: Some("https://crm.example.com/in".into()),
            events: events.iter().map(|e| e.to_string()).collect(),
            signer: webhook_signing::Signer::new(vec![key]).ok(),
            max_per_second: None,
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
}

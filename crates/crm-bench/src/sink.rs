//! The webhook sink: a local HTTP receiver that verifies outbound webhooks the way a careful CRM would.
//!
//! For every `POST` (on any path) it checks both signature schemes of docs/contract.md §4 with [`webhook_signing::Verifier`]:
//! the crm scheme (`x-crm-webhook-timestamp` + `x-crm-webhook-signature`) and Standard Webhooks (`webhook-id` +
//! `webhook-timestamp` + `webhook-signature`). It also checks that `x-crm-webhook-id` equals `webhook-id` and that the
//! body's `id` equals both. A delivery passing every check is answered with the configured status and
//! `{"ok":true}`; any failure is answered `401` with `{"ok":false,"error":"<reasons>"}`.
//!
//! Each delivery is reported as one line (see [`render_record`]), optionally followed by the pretty-printed body.
//! The secrets are turned into keys when the configuration is built and are never printed.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::SecondsFormat;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;
use webhook_signing::{
    SigningKey, Verifier, CRM_SIGNATURE_HEADER, CRM_TIMESTAMP_HEADER, STANDARD_ID_HEADER, STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
};

/// Header carrying the event id (docs/contract.md §4); must equal `webhook-id`.
pub const CRM_ID_HEADER: &str = "x-crm-webhook-id";
/// Header carrying the event type.
pub const CRM_EVENT_HEADER: &str = "x-crm-webhook-event";
/// Header carrying the attempt number.
pub const CRM_ATTEMPT_HEADER: &str = "x-crm-webhook-attempt";

/// Default maximum allowed `|now - timestamp|`, in seconds (the Standard Webhooks recommendation).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Longest header or body value echoed into a report line, in characters.
const MAX_FIELD_CHARS: usize = 200;

/// Where reports go.
#[derive(Debug, Clone, Default)]
pub enum Output {
    /// Standard output, one write per delivery so concurrent deliveries never interleave.
    #[default]
    Stdout,
    /// A channel receiving each delivery's rendered report (the line plus, unless quiet, the body); for tests.
    Channel(UnboundedSender<String>),
}

/// What the sink accepts and how it answers.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Accepted keys; a delivery verifies if any signature matches any key (rotation). Never printed.
    pub keys: Vec<SigningKey>,
    /// Maximum allowed `|now - timestamp|` in seconds.
    pub tolerance_secs: i64,
    /// Status answered to a delivery that passes every check.
    pub status: StatusCode,
    /// Print only the one-line summary, not the body.
    pub quiet: bool,
    /// Where reports go.
    pub output: Output,
}

impl SinkConfig {
    /// A configuration accepting any of `secrets` (`whsec_<base64>` or plain), with the defaults: tolerance 300 s,
    /// status 200, bodies printed, reports on stdout.
    ///
    /// Fails without naming the secret if there is none or one is empty or malformed.
    pub fn from_secrets<S: AsRef<str>>(secrets: &[S]) -> anyhow::Result<Self> {
        if secrets.is_empty() {
            anyhow::bail!("no webhook secret given (use --secret or WEBHOOK_SINK_SECRET)");
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                SigningKey::from_secret(secret.as_ref())
                    .with_context(|| format!("webhook secret #{} is unusable", i + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            keys,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            status: StatusCode::OK,
            quiet: false,
            output: Output::Stdout,
        })
    }
}

struct AppState {
    verifier: Verifier,
    tolerance_secs: i64,
    status: StatusCode,
    quiet: bool,
    output: Output,
}

/// Serves the sink on `listener` until `shutdown` completes, then finishes in-flight requests and returns.
pub async fn serve<F>(listener: tokio::net::TcpListener, config: SinkConfig, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if config.keys.is_empty() {
        anyhow::bail!("no webhook secret configured");
    }
    let state = Arc::new(AppState {
        verifier: Verifier::new(config.keys),
        tolerance_secs: config.tolerance_secs,
        status: config.status,
        quiet: config.quiet,
        output: config.output,
    });
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("webhook sink server failed")
}

async fn handle(State(state): State<Arc<AppState>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if method != Method::POST {
        let body = Json(json!({"ok": false, "error": "only POST is accepted"}));
        return (StatusCode::METHOD_NOT_ALLOWED, [(axum::http::header::ALLOW, "POST")], body).into_response();
    }
    let now = chrono::Utc::now();
    let record = check_delivery(&state.verifier, &headers, &body, now.timestamp(), state.tolerance_secs);
    let text = render_record(&now.to_rfc3339_opts(SecondsFormat::Millis, true), &record, state.quiet);
    emit(&state.output, text);
    match record.rejection() {
        None => (state.status, Json(json!({"ok": true}))).into_response(),
        Some(reason) => (StatusCode::UNAUTHORIZED, Json(json!({"ok": false, "error": reason}))).into_response(),
    }
}

fn emit(output: &Output, text: String) {
    match output {
        Output::Stdout => {
            // One locked write per delivery; a closed stdout must not take the sink down.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
        Output::Channel(tx) => {
            let _ = tx.send(text);
        }
    }
}

/// The outcome of checking one delivery, with what its report shows.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// Every failed check, in order; empty when the delivery verified.
    pub failures: Vec<String>,
    /// `webhook-id` (or, when absent, `x-crm-webhook-id`).
    pub webhook_id: Option<String>,
    /// `x-crm-webhook-event`.
    pub event: Option<String>,
    /// `x-crm-webhook-attempt`.
    pub attempt: Option<String>,
    /// The body, if it is JSON.
    pub body: Option<Value>,
    /// The raw body, for printing when it is not JSON.
    pub raw_body: Bytes,
}

impl DeliveryRecord {
    /// Whether every check passed.
    pub fn verified(&self) -> bool {
        self.failures.is_empty()
    }

    /// The reasons the delivery was rejected, joined; `None` when it verified.
    pub fn rejection(&self) -> Option<String> {
        (!self.failures.is_empty()).then(|| self.failures.join("; "))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    // A value that is not visible ASCII counts as absent; the verifier then reports it as missing.
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Runs every check on one delivery: both signature schemes against the verifier's keys, then the id consistency of
/// `x-crm-webhook-id`, `webhook-id` and the body's `id`.
pub fn check_delivery(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: &Bytes,
    now: i64,
    tolerance_secs: i64,
) -> DeliveryRecord {
    let mut failures = Vec::new();

    if let Err(e) = verifier.verify_crm(
        header(headers, CRM_TIMESTAMP_HEADER),
        header(headers, CRM_SIGNATURE_HEADER),
        body,
        now,
        tolerance_secs,
    ) {
        failures.push(format!("crm signature: {e}"));
    }
    let standard_id = header(headers, STANDARD_ID_HEADER);
    if let Err(e) = verifier.verify_standard(
        standard_id,
        header(headers, STANDARD_TIMESTAMP_HEADER),
        header(headers, STANDARD_SIGNATURE_HEADER),
        body,
        now,
        tolerance_secs,
    ) {
        failures.push(format!("standard webhooks signature: {e}"));
    }

    let standard_id = non_empty(standard_id);
    let crm_id = non_empty(header(headers, CRM_ID_HEADER));
    match (&crm_id, &standard_id) {
        (None, _) => failures.push(format!("missing or empty header {CRM_ID_HEADER}")),
        (Some(crm), Some(standard)) if crm != standard => {
            failures.push(format!("{CRM_ID_HEADER} does not equal {STANDARD_ID_HEADER}"));
        }
        _ => {}
    }

    let parsed = serde_json::from_slice::<Value>(body).ok();
    match &parsed {
        None => failures.push("body is not JSON".to_owned()),
        Some(value) => match (value.get("id").and_then(Value::as_str), standard_id.as_ref().or(crm_id.as_ref())) {
            (None, _) => failures.push("body has no string id".to_owned()),
            (Some(body_id), Some(id)) if body_id != id => {
                failures.push(format!("body id does not equal {STANDARD_ID_HEADER}"));
            }
            _ => {}
        },
    }

    DeliveryRecord {
        failures,
        webhook_id: standard_id.or(crm_id),
        event: non_empty(header(headers, CRM_EVENT_HEADER)),
        attempt: non_empty(header(headers, CRM_ATTEMPT_HEADER)),
        body: parsed,
        raw_body: body.clone(),
    }
}

/// Makes an untrusted value safe for a space-separated report line: `-` when absent or empty, whitespace and control
/// characters escaped, at most [`MAX_FIELD_CHARS`] characters.
fn field(value: Option<&str>) -> String {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return "-".to_owned();
    };
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        if c.is_whitespace() || c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON scalar as report text: strings as they are, numbers in JSON form, anything else absent.
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Renders one delivery's report:
///
/// `<now> <verified|REJECTED(reasons)> id=… event=… attempt=… workspace=… row=… version=… changed=a,b`
///
/// Absent values are `-`. Unless `quiet`, the pretty-printed JSON body (or, if it is not JSON, the raw body as
/// text) follows, indented by four spaces. The result ends with a newline.
pub fn render_record(now: &str, record: &DeliveryRecord, quiet: bool) -> String {
    let body = record.body.as_ref();
    let data = body.and_then(|b| b.get("data"));
    let row = data.and_then(|d| d.get("row"));
    let changed = data.and_then(|d| d.get("changed_fields")).and_then(Value::as_array).map(|fields| {
        fields.iter().map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")
    });
    let verdict = match record.rejection() {
        None => "verified".to_owned(),
        Some(reason) => format!("REJECTED({reason})"),
    };
    let mut text = format!(
        "{now} {verdict} id={} event={} attempt={} workspace={} row={} version={} changed={}\n",
        field(record.webhook_id.as_deref()),
        field(record.event.as_deref()),
        field(record.attempt.as_deref()),
        field(scalar(body.and_then(|b| b.get("workspace_id"))).as_deref()),
        field(scalar(row.and_then(|r| r.get("id"))).as_deref()),
        field(scalar(row.and_then(|r| r.get("version"))).as_deref()),
        field(changed.as_deref()),
    );
    if !quiet {
        let pretty = match body {
            Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
            None => String::from_utf8_lossy(&record.raw_body).into_owned(),
        };
        for line in pretty.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use webhook_signing::Signer;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "019a3c1e-7d2a-7b3c-9f00-000000000001";

    fn signed(id_in_body: &str, now: i64) -> (HeaderMap, Bytes) {
        let body = Bytes::from(
            json!({
                "id": id_in_body,
                "type": "crm_row.updated",
                "workspace_id": "00000000-0000-0000-0000-0000000000aa",
                "data": {"row": {"id": "r1", "version": 4}, "changed_fields": ["pipeline_stage", "owner"]},
            })
            .to_string(),
        );
        let signer = Signer::new(vec![SigningKey::from_secret(SECRET).unwrap()]).unwrap();
        let sig = signer.sign(ID, now, &body);
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        };
        put(CRM_ID_HEADER, ID);
        put(CRM_EVENT_HEADER, "crm_row.updated");
        put(CRM_ATTEMPT_HEADER, "2");
        put(CRM_TIMESTAMP_HEADER, &now.to_string());
        put(CRM_SIGNATURE_HEADER, &sig.crm_signature);
        put(STANDARD_ID_HEADER, ID);
        put(STANDARD_TIMESTAMP_HEADER, &now.to_string());
        put(STANDARD_SIGNATURE_HEADER, &sig.standard_signature);
        (headers, body)
    }

    #[test]
    fn a_correct_delivery_renders_one_summary_line() {
        let verifier = Verifier::from_secret(SECRET).unwrap();
        let (headers, body) = signed(ID, 1_700_000_000);
        let record = check_delivery(&verifier, &headers, &body, 1_700_000_010, 300);
        assert!(record.verified(), "{:?}", record.failures);
        let text = render_record("2026-11-01T09:30:00.000Z", &record, true);
        assert_eq!(
            text,
            format!(
                "2026-11-01T09:30:00.000Z verified id={ID} event=crm_row.updated attempt=2 \
                 workspace=00000000-0000-0000-0000-0000000000aa row=r1 version=4 changed=pipeline_stage,owner\n"
            )
        );
        let loud = render_record("t", &record, false);
        assert!(loud.lines().count() > 1);
        assert!(loud.lines().skip(1).all(|l| l.starts_with("    ")));
        assert!(!loud.contains(SECRET) && !loud.contains(SECRET.trim_start_matches("whsec_")));
    }

    #[test]
    fn id_mismatches_and_stale_timestamps_are_rejected() {
        let verifier = Verifier::from_secret(SECRET).unwrap();
        let (headers, body) = signed("someone-else", 1_700_000_000);
        let record = check_delivery(&verifier, &headers, &body, 1_700_000_000, 300);
        assert_eq!(record.failures, ["body id does not equal webhook-id"]);

        let (mut headers, body) = signed(ID, 1_700_000_000);
        headers.insert(CRM_ID_HEADER, HeaderValue::from_static("other"));
        let record = check_delivery(&verifier, &headers, &body, 1_700_000_000, 300);
        assert_eq!(record.failures, ["x-crm-webhook-id does not equal webhook-id"]);

        let (headers, body) = signed(ID, 1_700_000_000);
        let record = check_delivery(&verifier, &headers, &body, 1_700_000_301, 300);
        assert_eq!(record.failures.len(), 2);
        assert!(record.failures.iter().all(|f| f.ends_with("timestamp is outside the allowed tolerance")));
    }

    #[test]
    fn untrusted_values_cannot_break_the_line() {
        assert_eq!(field(None), "-");
        assert_eq!(field(Some("")), "-");
        assert_eq!(field(Some("a b\nc")), "a\\u{20}b\\u{a}c");
        assert_eq!(field(Some(&"x".repeat(500))).chars().count(), MAX_FIELD_CHARS + 1);
    }

    #[test]
    fn a_config_needs_a_usable_secret_and_never_shows_it() {
        assert!(SinkConfig::from_secrets::<&str>(&[]).is_err());
        let err = SinkConfig::from_secrets(&["whsec_%%%"]).unwrap_err();
        assert!(!format!("{err:#}").contains("%%%"), "{err:#}");
        let config = SinkConfig::from_secrets(&[SECRET, "plain-old-secret"]).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("MfKQ9r8") && !shown.contains("plain-old-secret"), "{shown}");
    }
}

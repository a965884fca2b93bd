//! Reading what reached a test's stream, without consuming it.

use async_nats::jetstream::{self, message::StreamMessage};
use crm_events::RowChangedEvent;

/// The number of messages stored in `stream` (0 if it does not exist yet).
pub async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Every message stored in `stream`, in sequence order.
pub async fn messages(js: &jetstream::Context, stream: &str) -> Vec<StreamMessage> {
    let Ok(mut s) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let Ok(info) = s.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

/// Every event stored in `stream`, decoded.
pub async fn events(js: &jetstream::Context, stream: &str) -> Vec<RowChangedEvent> {
    messages(js, stream)
        .await
        .iter()
        .map(|m| RowChangedEvent::from_slice(&m.payload).expect("stream message is an event"))
        .collect()
}

-- The delivery log, written by delivery-worker and read by crm-api. One delivery per event (its id is the event
-- id, which is also the webhook id the receiver sees); one row per attempt. Attempts are counted here rather than
-- in JetStream's redelivery counter, so NAKs that are not attempts (fairness hold-backs, shutdown hand-backs)
-- do not spend the retry budget.
CREATE TABLE deliveries (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event_type        text NOT NULL,
    row_id            uuid,
    status            text NOT NULL
                      CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed', 'dead', 'skipped')),
    attempts          integer NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    next_attempt_at   timestamptz,
    -- The event body, kept so an operator can redeliver after the stream has let go of the message.
    event             bytea NOT NULL,
    -- The worker holding this delivery, until when: the send-log guard against two workers sending one event
    -- at the same time (a redelivered message while the first copy is still in flight).
    lease_until       timestamptz,
    -- Set by a redeliver request; the message carrying it is sent even though the delivery had ended.
    redelivery_id     uuid
);
CREATE INDEX deliveries_workspace_newest ON deliveries (workspace_id, id DESC);
CREATE INDEX deliveries_workspace_status_newest ON deliveries (workspace_id, status, id DESC);

CREATE TABLE delivery_attempts (
    delivery_id       uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt           integer NOT NULL CHECK (attempt >= 1),
    started_at        timestamptz NOT NULL,
    duration_ms       integer NOT NULL,
    status_code       integer,
    error             text,
    -- At most 1 KiB of the response body.
    response_excerpt  text CHECK (octet_length(response_excerpt) <= 1024),
    PRIMARY KEY (delivery_id, attempt)
);

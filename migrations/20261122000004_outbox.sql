-- The transactional outbox: a row change and its event commit together; the relay in crm-api publishes events to
-- JetStream with Nats-Msg-Id = msg_id and deletes them once the stream has acknowledged them. Deleting is the
-- "mark as sent": the stream is the record from then on, and the table stays small. A relay that dies between
-- publishing and deleting republishes on restart, and the stream's duplicate window stores the event once.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    msg_id      uuid NOT NULL,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    -- Message headers to send (W3C traceparent, a redelivery marker); string to string.
    headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Wake the relay at commit instead of waiting for its next poll. One notification per inserting statement;
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crm_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Idempotency keys of the interest upsert: a retried request with the same key gets the first response and
-- changes nothing. Kept for 24 hours.
CREATE TABLE idempotency_keys (
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key            text NOT NULL,
    request_hash   bytea NOT NULL,
    status_code    smallint,
    response_body  bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Outbox events the relay could not publish and set aside, with the reason, so that they never block the events
-- behind them (the relay takes the oldest events first; one that fails on every pass would stop every workspace).
-- Today the one such reason is an event larger than the stream server accepts. An operator inspects them
-- (GET /admin/outbox/parked) and re-drives them (POST /admin/outbox/parked/{seq}/redrive) once the cause is fixed,
-- for example after raising the server's max_payload; a re-driven event goes back into the outbox with its own
-- message id, so the stream still stores it once.
CREATE TABLE outbox_parked (
    seq         bigint PRIMARY KEY,
    msg_id      uuid NOT NULL,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);

-- An optional cap on the requests per second sent to a workspace's webhook: CRMs enforce request quotas, and a
-- webhook that exceeds one gets 429s. Null: no cap. Each worker paces its requests to the endpoint to this rate
-- divided by the workers alive (see worker_heartbeats), so together they keep to it.
ALTER TABLE webhook_settings
    ADD COLUMN max_per_second double precision CHECK (max_per_second > 0 AND max_per_second <= 10000);

-- Every worker process says it is alive every few seconds; the number alive divides the rate caps above.
CREATE TABLE worker_heartbeats (
    worker_id  uuid PRIMARY KEY,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- What each worker's scheduler knows of an endpoint (the workspace's webhook), written every few seconds by the
-- workers and read by crm-api for the console: the adaptive concurrency limit, what is in flight and queued, and
-- whether the breaker or a Retry-After pauses it. One row per (workspace, worker); rows of a worker that stopped
-- go with it, or are ignored once old.
CREATE TABLE endpoint_state (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    worker_id         uuid NOT NULL,
    concurrency_limit integer NOT NULL,
    in_flight         integer NOT NULL,
    queued            integer NOT NULL,
    state             text NOT NULL CHECK (state IN ('healthy', 'limited', 'paused')),
    paused_until      timestamptz,
    limit_changed_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, worker_id)
);

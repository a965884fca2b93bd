-- Bulk recovery: an operator asks for every failed (or dead, skipped, succeeded) delivery of a workspace since a
-- point in time to be sent again. A recovery is a row here, not work held in a request: crm-api's background task
-- re-queues its deliveries a bounded batch at a time, only while live traffic leaves room, and records how far it
-- got (`walked_past`) in the same transaction as each batch. So a recovery survives a crm-api restart (the next start
-- carries on from there), and replicas never queue one delivery twice (each batch locks its recovery's row,
-- SKIP LOCKED, and re-opens only deliveries still in a matched state).
CREATE TABLE recoveries (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- Deliveries created at or after this (by their UUIDv7 id, to the millisecond) are matched.
    since         timestamptz NOT NULL,
    -- The delivery statuses matched, sorted and without duplicates (what makes two requests the same).
    statuses      text[] NOT NULL CHECK (cardinality(statuses) > 0
                      AND statuses <@ ARRAY['succeeded', 'failed', 'dead', 'skipped']),
    status        text NOT NULL CHECK (status IN ('running', 'completed')),
    -- Deliveries in a matched state when the recovery was created.
    matched       bigint NOT NULL CHECK (matched >= 0),
    -- Deliveries re-queued so far (a delivery redelivered by hand meanwhile is not queued again).
    queued        bigint NOT NULL DEFAULT 0 CHECK (queued >= 0),
    -- The last delivery id the recovery has gone past; deliveries are walked in id order, starting after the
    -- least id `since` can give.
    walked_past   uuid NOT NULL,
    -- The newest delivery id the recovery may reach: what existed when it was created.
    upto          uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- One running recovery per workspace: a second identical request finds it and queues nothing; a different one
-- waits until it has completed. The background task looks running recoveries up by this index too.
CREATE UNIQUE INDEX recoveries_one_running ON recoveries (workspace_id) WHERE status = 'running';
-- The console lists a workspace's recoveries, newest first.
CREATE INDEX recoveries_workspace_newest ON recoveries (workspace_id, id DESC);

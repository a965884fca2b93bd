-- CRM rows: one lead's line in the CRM sheet. This service owns both the lead's contact fields and its CRM fields
-- and a lead has exactly one row, so they share one table; the lead is found by (workspace, lower(email)).
CREATE TABLE crm_rows (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    version           bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    email             text NOT NULL,
    first_name        text,
    last_name         text,
    phone             text,
    company           text,
    job_title         text,
    linkedin_url      text,
    campaign          text,
    interest_type     text,
    interest_channel  text,
    interest_message  text,
    interest_at       timestamptz,
    interest_count    bigint NOT NULL DEFAULT 0 CHECK (interest_count >= 0),
    pipeline_stage    text NOT NULL DEFAULT 'new'
                      CHECK (pipeline_stage IN ('new', 'contacted', 'qualified', 'meeting_booked', 'won', 'lost')),
    owner             text,
    -- numeric without a fixed scale keeps the scale the user gave ("1250.00" reads back as "1250.00").
    deal_value        numeric CHECK (deal_value >= 0),
    deal_currency     text CHECK (deal_currency ~ '^[A-Z]{3}$'),
    next_step_at      timestamptz,
    notes             text,
    custom_fields     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(custom_fields) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- The interest upsert finds a lead by email, case-insensitively; the constraint name maps to a 409 on PATCH.
CREATE UNIQUE INDEX crm_rows_workspace_email_key ON crm_rows (workspace_id, lower(email));
-- Newest-first listing with an id cursor: ids are UUIDv7, so id order is creation order.
CREATE INDEX crm_rows_workspace_id_desc ON crm_rows (workspace_id, id DESC);

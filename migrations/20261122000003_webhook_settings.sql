-- Per-workspace webhook settings. The secret is stored only sealed (XChaCha20-Poly1305 under CRM_SECRET_KEY, the
-- workspace id as associated data); secret_last4 lets the console show which secret is set without revealing it.
-- During a rotation the replaced secret is kept, sealed, for 24 hours so receivers can verify with either.
CREATE TABLE webhook_settings (
    workspace_id               uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    enabled                    boolean NOT NULL DEFAULT false,
    url                        text,
    events                     text[] NOT NULL DEFAULT ARRAY['crm_row.created', 'crm_row.updated'],
    secret_sealed              bytea,
    secret_last4               text,
    previous_secret_sealed     bytea,
    previous_secret_expires_at timestamptz,
    -- Why the system (not a person) turned the webhook off, e.g. the endpoint answered 410 Gone.
    disabled_reason            text,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT enabled OR (url IS NOT NULL AND secret_sealed IS NOT NULL))
);

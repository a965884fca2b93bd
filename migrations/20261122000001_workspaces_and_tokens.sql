-- Workspaces are the tenant boundary: every row, setting, token and delivery belongs to exactly one.
CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Workspace API tokens. Only a SHA-256 hash of each token is stored, so a database dump reveals no usable
-- credential; revoking deletes the row, so the token stops working on the next request.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash    bytea NOT NULL CONSTRAINT api_tokens_token_hash_key UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_workspace ON api_tokens (workspace_id);

-- A redelivery gets a fresh retry budget: attempts before it stay in the log with their numbers, and the
-- CRM_WEBHOOK_MAX_ATTEMPTS limit counts from here. Without this a dead delivery, redelivered, would die again
-- after its first retryable failure.
ALTER TABLE deliveries ADD COLUMN budget_start integer NOT NULL DEFAULT 0;

-- The write path commits many row changes per transaction now (crm-api's writers), and each writer wakes its own
-- process's relay in-process after a commit. The per-statement trigger that sent NOTIFY crm_outbox at every commit
-- (and woke every replica's listener) is no longer needed; the few other writers of the outbox (a test event, a
-- redelivery, a re-driven parked event) send the notification themselves.
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();

-- Rows are read and written column by column again (their column list derived from crm-mapping's field list), not
-- as JSON: to_jsonb per row cost three times a plain read.
DROP FUNCTION crm_row_json(crm_rows);

-- The outbox is a queue: every row is inserted once and deleted once, within seconds. Vacuum it after a fixed
-- number of dead rows rather than a fraction of a table that is usually nearly empty.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
                        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);

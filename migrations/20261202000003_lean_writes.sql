-- Fewer bytes per event written to the heap, its indexes and the WAL.
--
-- Every event's body is stored with its delivery (`deliveries.event`, for redelivery), which crm-api creates in
-- the event's own transaction. The outbox row of such an event no longer carries a second copy: its `payload` is
-- NULL, and the relay reads the body from the delivery when it publishes. Events enqueued otherwise (a test event,
-- a redelivery, a re-driven parked event) still carry their payload.
ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL;

-- A delivery is updated twice after its insert (the worker's claim, then the attempt's record). Room left in each
-- page lets the claim, which changes no indexed column, be a HOT update: no index entries written for it.
ALTER TABLE deliveries SET (fillfactor = 90);

-- A row change rarely touches an indexed column (the email): with room in the page, the update is HOT and writes
-- no index entries.
ALTER TABLE crm_rows SET (fillfactor = 80);

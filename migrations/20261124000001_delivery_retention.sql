-- no-transaction
-- Retention of the delivery log (CRM_DELIVERY_RETENTION_DAYS): crm-api's housekeeping deletes ended deliveries
-- (succeeded, failed, dead, skipped) last updated before the retention, 1,000 per statement. Without an index each
-- of those statements would scan the whole table, which is exactly the table that has grown; with this one a
-- statement reads little more than the rows it deletes. It is partial because deliveries in progress are never
-- pruned and need not be in it.
--
-- Built CONCURRENTLY so that the worker's writes to deliveries carry on while it is built on a large table (a
-- plain CREATE INDEX blocks them for the whole build). That cannot run in a transaction, hence the first line,
-- and must be the file's only statement. If the build is interrupted PostgreSQL leaves the index INVALID and the
-- next run's IF NOT EXISTS keeps it: pruning stays correct but slow until
-- `REINDEX INDEX CONCURRENTLY deliveries_ended_updated_at` repairs it. Two crm-api replicas migrating at the same
-- moment can cause that (the second waits for the migration lock holding a snapshot the build must wait for, and
-- PostgreSQL cancels one of them as a deadlock), so with several replicas run `crm-api migrate` once first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS deliveries_ended_updated_at ON deliveries (updated_at)
    WHERE status IN ('succeeded', 'failed', 'dead', 'skipped');

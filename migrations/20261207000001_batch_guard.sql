-- crm-api writes a batch of row changes in one statement without a transaction around it (rows, outbox,
-- deliveries, idempotency keys as data-modifying parts of one WITH), each changed row only if it is still at the
-- version read. This guard makes the statement all or nothing: when a part wrote fewer rows than the batch has
-- (a row moved on, a new lead's email was taken meanwhile, a key exists already), it raises a serialization
-- failure, so nothing of the batch is written and crm-api writes it again in a transaction that locks its rows.
CREATE FUNCTION crm_batch_guard(ok boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'a row or key of the batch changed since it was read' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END;
$$;

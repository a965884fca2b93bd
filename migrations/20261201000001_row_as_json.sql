-- A row as JSON, in the shape crm_mapping::CrmRow reads and writes (one definition of a row's fields, in Rust):
-- crm-api reads rows with crm_row_json(r) and writes them with jsonb_populate_record(set)(NULL::crm_rows, ...),
-- so no SQL statement lists the columns and a column added to crm_rows with a matching field in CrmRow needs no
-- other SQL change. to_jsonb renders numeric as a JSON number, which would lose the scale of a deal value
-- ("1250.00" would read back as 1250.0); the decimal string is put back as text.
CREATE FUNCTION crm_row_json(r crm_rows) RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_jsonb(r) || jsonb_build_object('deal_value', r.deal_value::text)
$$;

-- Nothing reads deliveries.redelivery_id: a redelivery re-opens the delivery (status pending, a fresh retry
-- budget) and queues its stored event with a new message id. crm-api stops writing it; a later migration may drop
-- it once no older crm-api can be running.
COMMENT ON COLUMN deliveries.redelivery_id IS 'unused; no longer written';

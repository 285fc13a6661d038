-- Remember the batch's new deliveries that are recent enough to matter (appended: the table is never
-- read whole for them). Idempotent: a batch's rows are written once.
INSERT INTO state_deliveries
SELECT
    from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key,
    from_big_endian_64(substr(md5(to_utf8(event_id)), 1, 8)) AS id_key2,
    event_id, received_at, user_id, category, points, challenge_id, ts, counted, batch
FROM stage_status
WHERE batch = ${batch}
  AND was_counted IS NULL
  AND received_at >= date_add('day', -${retention_days}, TIMESTAMP '${as_of}')
  AND NOT EXISTS (SELECT 1 FROM state_deliveries WHERE batch = ${batch})

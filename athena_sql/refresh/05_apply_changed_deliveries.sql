-- The new counting of the known deliveries the batch changed (rare: an earlier delivery of the same
-- event_id arrived late). Idempotent: a row the batch already changed carries its batch number.
MERGE INTO state_deliveries AS d
USING (
    SELECT
        batch,
        from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key,
        from_big_endian_64(substr(md5(to_utf8(event_id)), 1, 8)) AS id_key2,
        received_at,
        counted
    FROM stage_status
    WHERE batch = ${batch}
      AND was_counted IS NOT NULL
      AND counted <> was_counted
) AS s
ON d.id_key = s.id_key AND d.id_key2 = s.id_key2 AND d.received_at = s.received_at
WHEN MATCHED AND d.batch < s.batch THEN
    UPDATE SET counted = s.counted, batch = s.batch

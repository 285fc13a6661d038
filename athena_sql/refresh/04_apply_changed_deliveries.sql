-- The new counting of the known deliveries the batch changed (rare: an earlier delivery of the same
-- event_id arrived late). Idempotent: a row the batch already changed carries its batch number.
MERGE INTO state_deliveries AS d
USING (
    SELECT batch, event_id, received_at, counted
    FROM stage_status
    WHERE batch = ${batch}
      AND was_counted IS NOT NULL
      AND counted <> was_counted
) AS s
ON d.event_id = s.event_id AND d.received_at = s.received_at
WHEN MATCHED AND d.batch < s.batch THEN
    UPDATE SET counted = s.counted, batch = s.batch

-- Remember the batch's deliveries that are recent enough to matter, and the new counting of known ones.
-- Idempotent: a row the batch already wrote carries its batch number.
MERGE INTO state_deliveries AS d
USING (
    SELECT batch, event_id, received_at, user_id, category, points, challenge_id, ts, counted
    FROM stage_status
    WHERE batch = ${batch}
      AND received_at >= date_add('day', -${retention_days}, TIMESTAMP '${as_of}')
) AS s
ON d.event_id = s.event_id AND d.received_at = s.received_at
WHEN MATCHED AND d.batch < s.batch THEN
    UPDATE SET counted = s.counted, batch = s.batch
WHEN NOT MATCHED THEN
    INSERT (event_id, received_at, user_id, category, points, challenge_id, ts, counted, batch)
    VALUES (s.event_id, s.received_at, s.user_id, s.category, s.points, s.challenge_id, s.ts, s.counted, s.batch)

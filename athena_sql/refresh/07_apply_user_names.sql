-- The name each user sent last (latest ts, then largest event_id), with the batch's names. Idempotent:
-- the latest wins however often this runs.
MERGE INTO state_user_names AS n
USING (
    SELECT user_id, user_name, ts, event_id
    FROM (
        SELECT
            user_id,
            user_name,
            ts,
            event_id,
            row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, event_id DESC) AS recency
        FROM stage_status
        WHERE batch = ${batch} AND user_name IS NOT NULL
    ) AS named
    WHERE recency = 1
) AS s
ON n.user_id = s.user_id
WHEN MATCHED AND (s.ts > n.ts OR (s.ts = n.ts AND s.event_id > n.event_id)) THEN
    UPDATE SET user_name = s.user_name, ts = s.ts, event_id = s.event_id, batch = ${batch}
WHEN NOT MATCHED THEN
    INSERT (user_id, user_name, ts, event_id, batch)
    VALUES (s.user_id, s.user_name, s.ts, s.event_id, ${batch})

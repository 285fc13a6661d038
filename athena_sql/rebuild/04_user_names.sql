-- The name each user sent last (latest ts, then largest event_id), from the lake's deliveries.
-- Idempotent: a batch's rows are written once.
INSERT INTO state_user_names
SELECT user_id, user_name, ts, event_id, ${batch} AS batch
FROM (
    SELECT
        user_id,
        user_name,
        ts,
        event_id,
        row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, event_id DESC) AS recency
    FROM score
    WHERE ${input} AND user_name IS NOT NULL
) AS named
WHERE recency = 1
  AND NOT EXISTS (SELECT 1 FROM state_user_names WHERE batch = ${batch})

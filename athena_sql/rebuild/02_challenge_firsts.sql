-- Each user's first completion of each challenge (earliest ts, then smallest event_id), among every
-- delivery. Idempotent: a batch's rows are written once.
INSERT INTO state_challenge_firsts
SELECT user_id, challenge_id, event_id, ts, category, points, ${batch} AS batch
FROM (
    SELECT
        user_id,
        challenge_id,
        event_id,
        ts,
        category,
        points,
        row_number() OVER (PARTITION BY user_id, challenge_id ORDER BY ts, event_id) AS completion_number
    FROM state_deliveries
    WHERE batch = ${batch} AND challenge_id IS NOT NULL
) AS c
WHERE completion_number = 1
  AND NOT EXISTS (SELECT 1 FROM state_challenge_firsts WHERE batch = ${batch})

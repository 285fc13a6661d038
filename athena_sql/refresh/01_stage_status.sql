-- A batch's deliveries and how they count. A delivery is one (event_id, received_at): a re-read or
-- re-delivered copy of it is the same delivery (the same record, so any copy will do). It counts when no
-- earlier delivery of its event_id was received within the horizon (${dedupe_horizon_days} days) before it. For every event_id the batch
-- touched: its new deliveries (from the input partitions, not seen by an earlier batch) and the known
-- ones from its earliest new one on, which a new one before them may change; the earlier known ones keep
-- theirs. Idempotent: a batch's rows are written once.
INSERT INTO stage_status
WITH input_deliveries AS (
    SELECT
        event_id,
        received_at,
        arbitrary(user_id) AS user_id,
        arbitrary(category) AS category,
        arbitrary(points) AS points,
        arbitrary(challenge_id) AS challenge_id,
        arbitrary(user_name) AS user_name,
        arbitrary(ts) AS ts
    FROM score
    WHERE ${input}
    GROUP BY event_id, received_at
),

known AS (
    SELECT d.event_id, d.received_at, d.user_id, d.category, d.points, d.challenge_id, d.ts, d.counted
    FROM state_deliveries AS d
    WHERE d.event_id IN (SELECT event_id FROM input_deliveries)
),

every_delivery AS (
    SELECT
        event_id, received_at, user_id, category, points, challenge_id,
        CAST(NULL AS varchar) AS user_name, ts, counted AS was_counted
    FROM known
    UNION ALL
    SELECT
        event_id, received_at, user_id, category, points, challenge_id, user_name, ts,
        CAST(NULL AS boolean) AS was_counted
    FROM input_deliveries
),

-- an input delivery that an earlier batch has seen (same event_id and received_at) is the known one
with_copies AS (
    SELECT e.*, count(*) OVER (PARTITION BY e.event_id, e.received_at) AS copies
    FROM every_delivery AS e
),

with_previous AS (
    SELECT
        c.*,
        lag(c.received_at) OVER (PARTITION BY c.event_id ORDER BY c.received_at) AS previous_received_at,
        min(CASE WHEN c.was_counted IS NULL THEN c.received_at END) OVER (PARTITION BY c.event_id) AS first_new
    FROM with_copies AS c
    WHERE NOT (c.was_counted IS NULL AND c.copies > 1)
)

SELECT
    ${batch} AS batch,
    event_id,
    received_at,
    user_id,
    category,
    points,
    challenge_id,
    user_name,
    ts,
    (previous_received_at IS NULL
     OR received_at > previous_received_at + INTERVAL '${dedupe_horizon_days}' DAY) AS counted,
    was_counted
FROM with_previous
WHERE received_at >= first_new
  AND NOT EXISTS (SELECT 1 FROM stage_status WHERE batch = ${batch})

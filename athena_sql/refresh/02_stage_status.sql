-- Which deliveries count, for every event_id the batch touched: a delivery counts when no earlier
-- delivery of its event_id was received within the horizon (${dedupe_horizon_days} days) before it.
-- Only deliveries from the batch's earliest new one on can change; the earlier known ones keep theirs.
INSERT INTO stage_status
WITH new_deliveries AS (
    SELECT event_id, received_at, user_id, category, points, challenge_id, ts
    FROM stage_deliveries
    WHERE batch = ${batch}
),

touched AS (
    SELECT event_id, min(received_at) AS first_new
    FROM new_deliveries
    GROUP BY event_id
),

known AS (
    SELECT d.event_id, d.received_at, d.user_id, d.category, d.points, d.challenge_id, d.ts, d.counted
    FROM state_deliveries AS d
    INNER JOIN touched AS t ON d.event_id = t.event_id
),

every_delivery AS (
    SELECT event_id, received_at, user_id, category, points, challenge_id, ts, counted AS was_counted
    FROM known
    UNION ALL
    SELECT event_id, received_at, user_id, category, points, challenge_id, ts, CAST(NULL AS boolean)
    FROM new_deliveries
),

with_previous AS (
    SELECT
        e.*,
        lag(e.received_at) OVER (PARTITION BY e.event_id ORDER BY e.received_at) AS previous_received_at
    FROM every_delivery AS e
)

SELECT
    ${batch} AS batch,
    p.event_id,
    p.received_at,
    p.user_id,
    p.category,
    p.points,
    p.challenge_id,
    p.ts,
    (p.previous_received_at IS NULL
     OR p.received_at > p.previous_received_at + INTERVAL '${dedupe_horizon_days}' DAY) AS counted,
    p.was_counted
FROM with_previous AS p
INNER JOIN touched AS t ON p.event_id = t.event_id
WHERE p.received_at >= t.first_new
  AND NOT EXISTS (SELECT 1 FROM stage_status WHERE batch = ${batch})

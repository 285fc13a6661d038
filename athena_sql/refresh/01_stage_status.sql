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
        user_id,
        category,
        points,
        challenge_id,
        user_name,
        ts
    FROM score
    WHERE ${input}
),

-- the known deliveries of the batch's event_ids, found by the ids' 64-bit hash (the scan reads 8 bytes a
-- delivery, not the id's 36); another id with the same hash only brings rows of an event_id without new
-- deliveries, which the window below leaves out. The input's ids are read here a second time (a column of
-- the new data), so that the engine can filter the scan of the state by them as it reads
known AS (
    SELECT d.event_id, d.received_at, d.user_id, d.category, d.points, d.challenge_id, d.ts, d.counted
    FROM state_deliveries AS d
    WHERE d.id_key IN (SELECT from_big_endian_64(xxhash64(to_utf8(event_id))) FROM score WHERE ${input})
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

-- one row per delivery: copies of it (re-read, or the same record in two files) are one delivery, and an
-- earlier batch's (arbitrary takes a non-null value) is the known one, whose name that batch applied
deliveries AS (
    SELECT
        event_id,
        received_at,
        arbitrary(user_id) AS user_id,
        arbitrary(category) AS category,
        arbitrary(points) AS points,
        arbitrary(challenge_id) AS challenge_id,
        CASE WHEN arbitrary(was_counted) IS NULL THEN arbitrary(user_name) END AS user_name,
        arbitrary(ts) AS ts,
        arbitrary(was_counted) AS was_counted
    FROM every_delivery
    GROUP BY event_id, received_at
),

with_previous AS (
    SELECT
        d.*,
        lag(d.received_at) OVER (PARTITION BY d.event_id ORDER BY d.received_at) AS previous_received_at,
        min(CASE WHEN d.was_counted IS NULL THEN d.received_at END) OVER (PARTITION BY d.event_id) AS first_new
    FROM deliveries AS d
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

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
        ts,
        from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key
    FROM score
    WHERE ${input}
),

-- the known deliveries of the batch's event_ids, found by the ids' 64-bit hash (the scan reads 8 bytes a
-- delivery, not the id's 36); another id with the same hash only brings rows that no new delivery joins,
-- which the window below leaves out
known AS (
    SELECT d.event_id, d.received_at, d.user_id, d.category, d.points, d.challenge_id, d.ts, d.counted
    FROM state_deliveries AS d
    WHERE d.id_key IN (SELECT id_key FROM input_deliveries)
),

-- an input delivery that an earlier batch has seen (same event_id and received_at) is the known one
new_deliveries AS (
    SELECT i.event_id, i.received_at, i.user_id, i.category, i.points, i.challenge_id, i.user_name, i.ts
    FROM input_deliveries AS i
    WHERE NOT EXISTS (
        SELECT 1 FROM known AS k WHERE k.event_id = i.event_id AND k.received_at = i.received_at
    )
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
    FROM new_deliveries
),

with_previous AS (
    SELECT
        e.*,
        lag(e.received_at) OVER (PARTITION BY e.event_id ORDER BY e.received_at) AS previous_received_at,
        min(CASE WHEN e.was_counted IS NULL THEN e.received_at END) OVER (PARTITION BY e.event_id) AS first_new
    FROM every_delivery AS e
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
  -- two copies of one new delivery (the same record in two files): the second is left out
  AND previous_received_at IS DISTINCT FROM received_at
  AND NOT EXISTS (SELECT 1 FROM stage_status WHERE batch = ${batch})

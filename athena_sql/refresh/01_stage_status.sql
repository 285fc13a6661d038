-- A batch's deliveries and how they count. A delivery is one (event_id, received_at): a re-read or
-- re-delivered copy of it is the same delivery (the same record, so any copy will do). It counts when no
-- earlier delivery of its event_id was received within the horizon (${dedupe_horizon_days} days) before it. For every event_id the batch
-- touched: its new deliveries (from the input partitions, not seen by an earlier batch) and the known
-- ones from its earliest new one on, which a new one before them may change; the earlier known ones keep
-- theirs. An event is matched by its 128-bit key (state_deliveries). Idempotent: a batch's rows are
-- written once.
INSERT INTO stage_status
WITH input_deliveries AS (
    SELECT
        from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key,
        from_big_endian_64(substr(md5(to_utf8(event_id)), 1, 8)) AS id_key2,
        received_at,
        event_id,
        user_id,
        category,
        points,
        challenge_id,
        user_name,
        ts
    FROM score
    WHERE ${input}
),

-- the known deliveries of the batch's events: their keys, times and counting only (the state's narrow
-- columns). The input's ids are hashed here a second time, so that the engine filters the scan of the
-- state by them as it reads
known AS (
    SELECT d.id_key, d.id_key2, d.received_at, d.counted
    FROM state_deliveries AS d
    WHERE d.id_key IN (SELECT from_big_endian_64(xxhash64(to_utf8(event_id))) FROM score WHERE ${input})
),

-- every delivery of those events by its key and time alone (the columns that go through the grouping and
-- the window below); an input row marks it read again
every_delivery AS (
    SELECT id_key, id_key2, received_at, counted AS was_counted, false AS read_again
    FROM known
    UNION ALL
    SELECT id_key, id_key2, received_at, CAST(NULL AS boolean) AS was_counted, true AS read_again
    FROM input_deliveries
),

-- one row per delivery: copies of it (re-read, or the same record in two files) are one delivery, and an
-- earlier batch's (arbitrary takes a non-null value) is the known one
deliveries AS (
    SELECT id_key, id_key2, received_at, arbitrary(was_counted) AS was_counted, bool_or(read_again) AS read_again
    FROM every_delivery
    GROUP BY id_key, id_key2, received_at
),

staged AS (
    SELECT
        *,
        (previous_received_at IS NULL
         OR received_at > previous_received_at + INTERVAL '${dedupe_horizon_days}' DAY) AS counted
    FROM (
        SELECT
            d.*,
            lag(d.received_at) OVER (PARTITION BY d.id_key, d.id_key2 ORDER BY d.received_at) AS previous_received_at,
            min(CASE WHEN d.was_counted IS NULL THEN d.received_at END)
                OVER (PARTITION BY d.id_key, d.id_key2) AS first_new
        FROM deliveries AS d
    ) AS w
    WHERE received_at >= first_new
),

-- what the rows need beyond the keys: from the input (any copy: they are one record; a known delivery's
-- name was applied by the batch that first read it), or, for a known delivery the input did not read
-- again (rare: an earlier delivery of its event arrived late), from the state
staged_rows AS (
    SELECT
        arbitrary(i.event_id) AS event_id, s.received_at, arbitrary(i.user_id) AS user_id,
        arbitrary(i.category) AS category, arbitrary(i.points) AS points,
        arbitrary(i.challenge_id) AS challenge_id,
        CASE WHEN arbitrary(s.was_counted) IS NULL THEN arbitrary(i.user_name) END AS user_name,
        arbitrary(i.ts) AS ts, arbitrary(s.counted) AS counted, arbitrary(s.was_counted) AS was_counted
    FROM staged AS s
    INNER JOIN input_deliveries AS i
        ON i.id_key = s.id_key AND i.id_key2 = s.id_key2 AND i.received_at = s.received_at
    WHERE s.read_again
    GROUP BY s.id_key, s.id_key2, s.received_at
    UNION ALL
    SELECT
        d.event_id, s.received_at, d.user_id, d.category, d.points, d.challenge_id, CAST(NULL AS varchar), d.ts,
        s.counted, s.was_counted
    FROM staged AS s
    INNER JOIN state_deliveries AS d
        ON d.id_key = s.id_key AND d.id_key2 = s.id_key2 AND d.received_at = s.received_at
    WHERE NOT s.read_again
)

SELECT
    ${batch} AS batch, event_id, received_at, user_id, category, points, challenge_id, user_name, ts, counted,
    was_counted
FROM staged_rows
WHERE NOT EXISTS (SELECT 1 FROM stage_status WHERE batch = ${batch})

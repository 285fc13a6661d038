-- A batch's deliveries and how they count, by their keys (step 02 adds their values). A delivery is one
-- (event_id, received_at): a re-read or re-delivered copy of it is the same delivery (the same record, so
-- any copy will do). It counts when no earlier delivery of its event_id was received within the horizon
-- (${dedupe_horizon_days} days) before it. For every event_id the batch touched: its new deliveries (from
-- the input partitions, not seen by an earlier batch) and the known ones from its earliest new one on,
-- which a new one before them may change; the earlier known ones keep theirs. An event is matched by its
-- 128-bit key (state_deliveries). Idempotent: a batch's rows are written once.
-- The window over every delivery of the batch's events runs here once, on the keys alone, and step 02
-- reads its result: in one statement, each reference to it would read the state's deliveries again
-- (streamboard.sql.scans).
INSERT INTO stage_keys
WITH input_keys AS (
    SELECT
        from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key,
        from_big_endian_64(substr(md5(to_utf8(event_id)), 1, 8)) AS id_key2,
        received_at
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
    FROM input_keys
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
)

SELECT ${batch} AS batch, id_key, id_key2, received_at, counted, was_counted, read_again
FROM staged
WHERE NOT EXISTS (SELECT 1 FROM stage_keys WHERE batch = ${batch})

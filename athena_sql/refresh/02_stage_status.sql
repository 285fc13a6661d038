-- A batch's deliveries and how they count, with their values: the keys and counting step 01 staged
-- (stage_keys), the values from the input (any copy: they are one record) or, for a known delivery the
-- input did not read again, from the state. Idempotent: a batch's rows are written once.
INSERT INTO stage_status
WITH staged AS (
    SELECT id_key, id_key2, received_at, counted, was_counted, read_again
    FROM stage_keys
    WHERE batch = ${batch}
),

input_deliveries AS (
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

-- A first build (or an admin's full rebuild; the state is empty): every delivery in the lake and whether
-- it counts, in one pass. A delivery is one (event_id, received_at); it counts when no earlier delivery
-- of its event_id was received within the horizon (${dedupe_horizon_days} days) before it; a second copy
-- of one delivery (the same record in two files) is left out. Every delivery is kept until the steps
-- below have read it; the pruning at the end keeps those that a later delivery may still meet.
-- Idempotent: a batch's rows are written once.
INSERT INTO state_deliveries
SELECT
    from_big_endian_64(xxhash64(to_utf8(event_id))) AS id_key,
    from_big_endian_64(substr(md5(to_utf8(event_id)), 1, 8)) AS id_key2,
    event_id,
    received_at,
    user_id,
    category,
    points,
    challenge_id,
    ts,
    (previous_received_at IS NULL
     OR received_at > previous_received_at + INTERVAL '${dedupe_horizon_days}' DAY) AS counted,
    ${batch} AS batch
FROM (
    SELECT
        event_id, received_at, user_id, category, points, challenge_id, ts,
        lag(received_at) OVER (PARTITION BY event_id ORDER BY received_at) AS previous_received_at
    FROM score
    WHERE ${input}
) AS d
WHERE previous_received_at IS DISTINCT FROM received_at
  AND NOT EXISTS (SELECT 1 FROM state_deliveries WHERE batch = ${batch})

-- The signed points the batch adds to the ledger, in event-time order (reads by ts range then touch
-- few files). A score without a challenge: each counted delivery adds its points, a delivery that stops
-- counting takes them back. A challenge: only each user's first completion counts (earliest ts, then
-- smallest event_id); a new first replaces the old one. Idempotent: a batch's rows are written once.
INSERT INTO state_contributions
WITH status AS (
    SELECT event_id, user_id, category, points, challenge_id, ts, counted, was_counted
    FROM stage_status
    WHERE batch = ${batch}
),

delivery_changes AS (
    SELECT user_id, category, ts, CASE WHEN counted THEN points ELSE -points END AS points
    FROM status
    WHERE challenge_id IS NULL
      AND counted <> coalesce(was_counted, false)
),

candidates AS (
    SELECT
        user_id,
        challenge_id,
        event_id,
        ts,
        category,
        points,
        row_number() OVER (PARTITION BY user_id, challenge_id ORDER BY ts, event_id) AS completion_number
    FROM status
    WHERE challenge_id IS NOT NULL
),

new_firsts AS (
    SELECT
        c.user_id,
        c.event_id,
        c.ts,
        c.category,
        c.points,
        f.event_id AS old_event_id,
        f.ts AS old_ts,
        f.category AS old_category,
        f.points AS old_points
    FROM candidates AS c
    LEFT JOIN state_challenge_firsts AS f
        ON f.user_id = c.user_id AND f.challenge_id = c.challenge_id
    WHERE c.completion_number = 1
      AND (f.event_id IS NULL OR c.ts < f.ts OR (c.ts = f.ts AND c.event_id < f.event_id))
),

-- a new first adds its points and takes back the old first's: new_firsts is read once (each reference to it
-- would join the firsts again: streamboard.sql.scans)
changes AS (
    SELECT user_id, category, ts, points FROM delivery_changes
    UNION ALL
    SELECT
        f.user_id,
        CASE WHEN k.n = 1 THEN f.category ELSE f.old_category END,
        CASE WHEN k.n = 1 THEN f.ts ELSE f.old_ts END,
        CASE WHEN k.n = 1 THEN f.points ELSE -f.old_points END
    FROM new_firsts AS f
    CROSS JOIN (VALUES (1), (2)) AS k (n)
    WHERE k.n = 1 OR f.old_event_id IS NOT NULL
)

SELECT ${batch} AS batch, user_id, category, points, ts
FROM changes
WHERE NOT EXISTS (SELECT 1 FROM state_contributions WHERE batch = ${batch})
ORDER BY ts

-- Every user's score on every board, stepped from the previous batch's as_of to this one: what entered
-- each trailing window and what left it (read from the ledger of the earlier batches by event time), plus
-- the batch's own changes that fall inside each window. Only the users whose scores change are touched.
-- Idempotent: a row the batch already changed carries its batch number.
-- Windows are trailing by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of.
MERGE INTO state_window_totals AS t
USING (
WITH clock AS (
    SELECT TIMESTAMP '${as_of}' AS as_of, TIMESTAMP '${prev_as_of}' AS prev_as_of
),

time_windows AS (
    SELECT time_window, days
    FROM (VALUES ('all', CAST(NULL AS integer)), ('30d', 30), ('365d', 365)) AS w (time_window, days)
),

-- the ledger rows at the windows' moving edges; the bounds are literals so that the engine reads only
-- the files (row groups) whose ts range meets them
ledger AS (
    SELECT l.user_id, l.category, l.points, l.ts
    FROM state_contributions AS l
    WHERE l.batch < ${batch}
      AND ((l.ts > TIMESTAMP '${prev_as_of}' AND l.ts <= TIMESTAMP '${as_of}')
           OR (l.ts > TIMESTAMP '${prev_as_of}' - INTERVAL '30' DAY
               AND l.ts <= TIMESTAMP '${as_of}' - INTERVAL '30' DAY)
           OR (l.ts > TIMESTAMP '${prev_as_of}' - INTERVAL '365' DAY
               AND l.ts <= TIMESTAMP '${as_of}' - INTERVAL '365' DAY))
),

stepped AS (
    SELECT w.time_window, l.user_id, l.category, l.points
    FROM ledger AS l
    CROSS JOIN time_windows AS w
    CROSS JOIN clock AS c
    WHERE l.ts <= c.as_of AND l.ts > c.prev_as_of
      AND (w.days IS NULL OR l.ts > date_add('day', -w.days, c.as_of))
    UNION ALL
    SELECT w.time_window, l.user_id, l.category, -l.points
    FROM ledger AS l
    CROSS JOIN time_windows AS w
    CROSS JOIN clock AS c
    WHERE w.days IS NOT NULL
      AND l.ts > date_add('day', -w.days, c.prev_as_of) AND l.ts <= c.prev_as_of
      AND l.ts <= date_add('day', -w.days, c.as_of)
    UNION ALL
    SELECT w.time_window, s.user_id, s.category, s.points
    FROM state_contributions AS s
    CROSS JOIN time_windows AS w
    CROSS JOIN clock AS c
    WHERE s.batch = ${batch}
      AND s.ts <= c.as_of
      AND (w.days IS NULL OR s.ts > date_add('day', -w.days, c.as_of))
),

per_category AS (
    SELECT time_window, user_id, category, sum(points) AS points
    FROM stepped
    GROUP BY time_window, user_id, category
),

changes AS (
    SELECT category AS scope, time_window, user_id, points FROM per_category
    UNION ALL
    SELECT 'overall' AS scope, time_window, user_id, sum(points) AS points
    FROM per_category
    GROUP BY time_window, user_id
)

SELECT scope, time_window, user_id, CAST(points AS bigint) AS points
FROM changes
WHERE points <> 0
) AS d
ON t.scope = d.scope AND t.time_window = d.time_window AND t.user_id = d.user_id
WHEN MATCHED AND t.batch < ${batch} THEN
    UPDATE SET score = t.score + d.points, batch = ${batch}
WHEN NOT MATCHED THEN
    INSERT (batch, scope, time_window, user_id, score) VALUES (${batch}, d.scope, d.time_window, d.user_id, d.points)

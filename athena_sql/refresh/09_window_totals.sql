-- Every user's score on every board as of the batch's as_of: the previous batch's totals stepped from
-- its as_of to this one (what entered each trailing window and what left it, read from the ledger by
-- event time), plus the batch's own changes that fall inside each window.
-- Windows are trailing by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of.
INSERT INTO state_window_totals
WITH clock AS (
    SELECT TIMESTAMP '${as_of}' AS as_of, TIMESTAMP '${prev_as_of}' AS prev_as_of
),

time_windows AS (
    SELECT time_window, days
    FROM (VALUES ('all', CAST(NULL AS integer)), ('30d', 30), ('365d', 365)) AS w (time_window, days)
),

ledger AS (
    SELECT l.user_id, l.category, l.points, l.ts
    FROM state_contributions AS l
    CROSS JOIN clock AS c
    WHERE l.batch < ${batch}
      AND ((l.ts > c.prev_as_of AND l.ts <= c.as_of)
           OR (l.ts > date_add('day', -30, c.prev_as_of) AND l.ts <= date_add('day', -30, c.as_of))
           OR (l.ts > date_add('day', -365, c.prev_as_of) AND l.ts <= date_add('day', -365, c.as_of)))
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
    FROM stage_contributions AS s
    CROSS JOIN time_windows AS w
    CROSS JOIN clock AS c
    WHERE s.batch = ${batch}
      AND s.ts <= c.as_of
      AND (w.days IS NULL OR s.ts > date_add('day', -w.days, c.as_of))
),

changes AS (
    SELECT 'overall' AS scope, time_window, user_id, points FROM stepped
    UNION ALL
    SELECT category AS scope, time_window, user_id, points FROM stepped
    UNION ALL
    SELECT scope, time_window, user_id, score AS points
    FROM state_window_totals
    WHERE batch = ${prev_batch}
),

totals AS (
    SELECT scope, time_window, user_id, CAST(sum(points) AS bigint) AS score
    FROM changes
    GROUP BY scope, time_window, user_id
)

SELECT ${batch} AS batch, scope, time_window, user_id, score
FROM totals
WHERE score <> 0
  AND NOT EXISTS (SELECT 1 FROM state_window_totals WHERE batch = ${batch})

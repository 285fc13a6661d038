-- Every user's score on every board as of the batch's as_of, summed from the ledger. Windows are trailing
-- by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of. Idempotent: a batch's rows are
-- written once.
INSERT INTO state_window_totals
WITH per_category AS (
    SELECT
        user_id,
        category,
        sum(points) AS points_all,
        sum(points) FILTER (WHERE ts > TIMESTAMP '${as_of}' - INTERVAL '30' DAY) AS points_30d,
        sum(points) FILTER (WHERE ts > TIMESTAMP '${as_of}' - INTERVAL '365' DAY) AS points_365d
    FROM state_contributions
    WHERE batch = ${batch} AND ts <= TIMESTAMP '${as_of}'
    GROUP BY user_id, category
),

scoped AS (
    SELECT category AS scope, user_id, points_all, points_30d, points_365d
    FROM per_category
    UNION ALL
    SELECT 'overall' AS scope, user_id, sum(points_all), sum(points_30d), sum(points_365d)
    FROM per_category
    GROUP BY user_id
),

scores AS (
    SELECT s.scope, w.time_window, s.user_id,
           CASE w.time_window WHEN 'all' THEN s.points_all WHEN '30d' THEN s.points_30d ELSE s.points_365d END
               AS score
    FROM scoped AS s
    CROSS JOIN (VALUES ('all'), ('30d'), ('365d')) AS w (time_window)
)

SELECT ${batch} AS batch, scope, time_window, user_id, CAST(score AS bigint) AS score
FROM scores
WHERE score <> 0
  AND NOT EXISTS (SELECT 1 FROM state_window_totals WHERE batch = ${batch})

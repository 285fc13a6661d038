-- Every user's score on every board as of the batch's as_of, summed from the ledger. Windows are trailing
-- by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of. Idempotent: a batch's rows are
-- written once.
INSERT INTO state_window_totals
WITH per_category AS (
    SELECT
        user_id,
        category,
        sum(points) AS score_all,
        sum(CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '30' DAY THEN points ELSE 0 END) AS score_30d,
        sum(CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '365' DAY THEN points ELSE 0 END) AS score_365d
    FROM state_contributions
    WHERE batch = ${batch} AND ts <= TIMESTAMP '${as_of}'
    GROUP BY user_id, category
),

scoped AS (
    SELECT category AS scope, user_id, score_all, score_30d, score_365d
    FROM per_category
    UNION ALL
    SELECT 'overall' AS scope, user_id, sum(score_all), sum(score_30d), sum(score_365d)
    FROM per_category
    GROUP BY user_id
)

SELECT
    ${batch} AS batch, scope, user_id, CAST(score_all AS bigint), CAST(score_30d AS bigint),
    CAST(score_365d AS bigint)
FROM scoped
WHERE (score_all <> 0 OR score_30d <> 0 OR score_365d <> 0)
  AND NOT EXISTS (SELECT 1 FROM state_window_totals WHERE batch = ${batch})

-- Every user's score on every board, stepped from the previous batch's as_of to this one: what entered
-- each trailing window and what left it (read from the ledger of the earlier batches by event time), plus
-- the batch's own changes that fall inside each window. Only the users whose scores change are touched.
-- Idempotent: a row the batch already changed carries its batch number.
-- Windows are trailing by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of.
MERGE INTO state_window_totals AS t
USING (
WITH moves AS (
    -- ledger points that entered the windows: all of them enter 'all', the recent ones 30d and 365d too
    -- (the bounds are literals, so that the engine reads only the row groups whose ts range meets them)
    SELECT
        user_id,
        category,
        points AS d_all,
        CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '30' DAY THEN points ELSE 0 END AS d_30d,
        CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '365' DAY THEN points ELSE 0 END AS d_365d
    FROM state_contributions
    WHERE batch < ${batch}
      AND ts > TIMESTAMP '${prev_as_of}' AND ts <= TIMESTAMP '${as_of}'
    UNION ALL
    -- ledger points that left the 30d window (they were in it at the previous as_of)
    SELECT user_id, category, 0, -points, 0
    FROM state_contributions
    WHERE batch < ${batch}
      AND ts > TIMESTAMP '${prev_as_of}' - INTERVAL '30' DAY AND ts <= TIMESTAMP '${as_of}' - INTERVAL '30' DAY
      AND ts <= TIMESTAMP '${prev_as_of}'
    UNION ALL
    -- and the 365d window
    SELECT user_id, category, 0, 0, -points
    FROM state_contributions
    WHERE batch < ${batch}
      AND ts > TIMESTAMP '${prev_as_of}' - INTERVAL '365' DAY AND ts <= TIMESTAMP '${as_of}' - INTERVAL '365' DAY
      AND ts <= TIMESTAMP '${prev_as_of}'
    UNION ALL
    -- the batch's own points, in the windows they fall in as of now
    SELECT
        user_id,
        category,
        points,
        CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '30' DAY THEN points ELSE 0 END,
        CASE WHEN ts > TIMESTAMP '${as_of}' - INTERVAL '365' DAY THEN points ELSE 0 END
    FROM state_contributions
    WHERE batch = ${batch} AND ts <= TIMESTAMP '${as_of}'
),

per_category AS (
    SELECT user_id, category, sum(d_all) AS d_all, sum(d_30d) AS d_30d, sum(d_365d) AS d_365d
    FROM moves
    GROUP BY user_id, category
),

changes AS (
    SELECT category AS scope, user_id, d_all, d_30d, d_365d FROM per_category
    UNION ALL
    SELECT 'overall' AS scope, user_id, sum(d_all), sum(d_30d), sum(d_365d)
    FROM per_category
    GROUP BY user_id
)

SELECT
    scope, user_id, CAST(d_all AS bigint) AS d_all, CAST(d_30d AS bigint) AS d_30d,
    CAST(d_365d AS bigint) AS d_365d
FROM changes
WHERE d_all <> 0 OR d_30d <> 0 OR d_365d <> 0
) AS d
ON t.scope = d.scope AND t.user_id = d.user_id
WHEN MATCHED AND t.batch < ${batch} THEN
    UPDATE SET score_all = t.score_all + d.d_all, score_30d = t.score_30d + d.d_30d,
               score_365d = t.score_365d + d.d_365d, batch = ${batch}
WHEN NOT MATCHED THEN
    INSERT (batch, scope, user_id, score_all, score_30d, score_365d)
    VALUES (${batch}, d.scope, d.user_id, d.d_all, d.d_30d, d.d_365d)

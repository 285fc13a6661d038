-- The boards of a refresh batch, from the window totals it left: every board (overall and per category;
-- all, 30d and 365d) at the batch's as_of, in display order. Rank is competition ranking (1, 2, 2, 4)
-- by score; ties are listed by user_id. A board with no entries still yields one row (user_id NULL),
-- so an emptied board is replaced too. Only the top 1000 ranks are kept (the read API's largest limit).
WITH time_windows AS (
    SELECT time_window
    FROM (VALUES ('all'), ('30d'), ('365d')) AS w (time_window)
),

-- the 1000th highest score of each board (each scope's three windows in one pass over the totals, without
-- the user ids): only users at or above it can rank 1000 or better
cutoffs AS (
    SELECT
        scope,
        element_at(max(score_all, 1000) FILTER (WHERE score_all <> 0), -1) AS lowest_all,
        element_at(max(score_30d, 1000) FILTER (WHERE score_30d <> 0), -1) AS lowest_30d,
        element_at(max(score_365d, 1000) FILTER (WHERE score_365d <> 0), -1) AS lowest_365d
    FROM state_window_totals
    GROUP BY scope
),

candidates AS (
    SELECT
        t.scope, t.user_id, t.score_all, t.score_30d, t.score_365d, c.lowest_all, c.lowest_30d, c.lowest_365d
    FROM state_window_totals AS t
    INNER JOIN cutoffs AS c ON c.scope = t.scope
    WHERE (t.score_all <> 0 AND t.score_all >= c.lowest_all)
       OR (t.score_30d <> 0 AND t.score_30d >= c.lowest_30d)
       OR (t.score_365d <> 0 AND t.score_365d >= c.lowest_365d)
),

-- each candidate once per window (a named query read three times would be computed, and its tables read,
-- three times: streamboard.sql.scans)
totals AS (
    SELECT scope, time_window, user_id, score
    FROM (
        SELECT
            c.scope, w.time_window, c.user_id,
            CASE w.time_window WHEN 'all' THEN c.score_all WHEN '30d' THEN c.score_30d ELSE c.score_365d END
                AS score,
            CASE w.time_window WHEN 'all' THEN c.lowest_all WHEN '30d' THEN c.lowest_30d ELSE c.lowest_365d END
                AS lowest
        FROM candidates AS c
        CROSS JOIN time_windows AS w
    ) AS t
    WHERE score <> 0 AND score >= lowest
),

ranked AS (
    SELECT
        scope,
        time_window,
        user_id,
        score,
        CAST(rank() OVER (PARTITION BY scope, time_window ORDER BY score DESC) AS bigint) AS board_rank
    FROM totals
),

board_keys AS (
    SELECT b.scope, w.time_window
    FROM (
        SELECT 'overall' AS scope
        UNION
        SELECT scope FROM state_scopes WHERE counted > 0
    ) AS b
    CROSS JOIN time_windows AS w
)

SELECT
    k.scope,
    k.time_window,
    TIMESTAMP '${as_of}' AS as_of,
    r.board_rank,
    r.user_id,
    n.user_name,
    r.score
FROM board_keys AS k
LEFT JOIN ranked AS r
    ON r.scope = k.scope AND r.time_window = k.time_window AND r.board_rank <= 1000
LEFT JOIN state_user_names AS n
    ON n.user_id = r.user_id
ORDER BY k.scope, k.time_window, r.board_rank, r.user_id

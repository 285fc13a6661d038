-- The boards of a refresh batch, from the window totals it left: every board (overall and per category;
-- all, 30d and 365d) at the batch's as_of, in display order. Rank is competition ranking (1, 2, 2, 4)
-- by score; ties are listed by user_id. A board with no entries still yields one row (user_id NULL),
-- so an emptied board is replaced too. Only the top 1000 ranks are kept (the read API's largest limit).
WITH time_windows AS (
    SELECT time_window
    FROM (VALUES ('all'), ('30d'), ('365d')) AS w (time_window)
),

totals AS (
    SELECT scope, 'all' AS time_window, user_id, score_all AS score FROM state_window_totals WHERE score_all <> 0
    UNION ALL
    SELECT scope, '30d', user_id, score_30d FROM state_window_totals WHERE score_30d <> 0
    UNION ALL
    SELECT scope, '365d', user_id, score_365d FROM state_window_totals WHERE score_365d <> 0
),

-- the 1000th highest score of each board: only users at or above it can rank 1000 or better
cutoffs AS (
    SELECT scope, time_window, element_at(max(score, 1000), -1) AS lowest
    FROM totals
    GROUP BY scope, time_window
),

ranked AS (
    SELECT
        t.scope,
        t.time_window,
        t.user_id,
        t.score,
        CAST(rank() OVER (PARTITION BY t.scope, t.time_window ORDER BY t.score DESC) AS bigint) AS board_rank
    FROM totals AS t
    INNER JOIN cutoffs AS c ON c.scope = t.scope AND c.time_window = t.time_window
    WHERE t.score >= c.lowest
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

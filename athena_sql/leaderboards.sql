-- leaderboards: every board (overall and per category; all, 30d and 365d) at board_clock's as_of.
-- Windows are trailing by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of.
-- Rank is competition ranking (1, 2, 2, 4) by score; ties are listed by user_id.
-- A board with no entries still yields one row (user_id NULL), so an emptied board is replaced too.
-- Only the top 1000 ranks are kept (the read API's largest limit).
WITH clock AS (
    SELECT as_of FROM board_clock
),

time_windows AS (
    SELECT time_window, days
    FROM (VALUES ('all', CAST(NULL AS integer)), ('30d', 30), ('365d', 365)) AS w (time_window, days)
),

scoped_points AS (
    SELECT 'overall' AS scope, user_id, ts, points FROM counted_scores
    UNION ALL
    SELECT category AS scope, user_id, ts, points FROM counted_scores
),

windowed_points AS (
    SELECT s.scope, w.time_window, s.user_id, s.points
    FROM scoped_points AS s
    CROSS JOIN time_windows AS w
    CROSS JOIN clock AS c
    WHERE s.ts <= c.as_of
      AND (w.days IS NULL OR s.ts > date_add('day', -w.days, c.as_of))
),

user_scores AS (
    SELECT scope, time_window, user_id, CAST(sum(points) AS bigint) AS score
    FROM windowed_points
    GROUP BY scope, time_window, user_id
),

ranked AS (
    SELECT
        scope,
        time_window,
        user_id,
        score,
        CAST(rank() OVER (PARTITION BY scope, time_window ORDER BY score DESC) AS bigint) AS board_rank
    FROM user_scores
),

board_keys AS (
    SELECT b.scope, w.time_window
    FROM (
        SELECT 'overall' AS scope
        UNION
        SELECT DISTINCT category AS scope FROM counted_scores
    ) AS b
    CROSS JOIN time_windows AS w
)

SELECT
    k.scope,
    k.time_window,
    c.as_of,
    r.board_rank,
    r.user_id,
    n.user_name,
    r.score
FROM board_keys AS k
CROSS JOIN clock AS c
LEFT JOIN ranked AS r
    ON r.scope = k.scope AND r.time_window = k.time_window AND r.board_rank <= 1000
LEFT JOIN latest_user_names AS n
    ON n.user_id = r.user_id

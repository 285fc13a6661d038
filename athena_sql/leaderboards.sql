-- leaderboards: every board (overall and per category; all, 30d and 365d) at board_clock's as_of.
-- Windows are trailing by event time: 30d = ts in (as_of - 30 days, as_of], all = ts <= as_of.
-- Rank is competition ranking (1, 2, 2, 4) by score; ties are listed by user_id.
-- A board with no entries still yields one row (user_id NULL), so an emptied board is replaced too.
-- Only the top 1000 ranks are kept (the read API's largest limit).
-- The lake is read twice (the counted scores once, the names once): Trino plans a named query inline at every
-- reference and reads its tables again each time (streamboard.sql.reads), so every board comes out of one
-- chain over the counted scores, the empty boards included.
WITH clock AS (
    SELECT as_of FROM board_clock
),

time_windows AS (
    SELECT time_window, days
    FROM (VALUES ('all', CAST(NULL AS integer)), ('30d', 30), ('365d', 365)) AS w (time_window, days)
),

-- each counted score twice: on the overall board and on its category's
scoped_points AS (
    SELECT CASE WHEN o.overall THEN 'overall' ELSE p.category END AS scope, p.user_id, p.ts, p.points
    FROM counted_scores AS p
    CROSS JOIN (VALUES (true), (false)) AS o (overall)
),

-- every board of a scope with counted scores (at any time) and every user on it or not: the score in the
-- window, and whether any point is in it
user_scores AS (
    SELECT
        scope, time_window, user_id,
        CAST(sum(CASE WHEN inside THEN points ELSE 0 END) AS bigint) AS score,
        bool_or(inside) AS present
    FROM (
        SELECT
            s.scope, w.time_window, s.user_id, s.points,
            s.ts <= c.as_of AND (w.days IS NULL OR s.ts > date_add('day', -w.days, c.as_of)) AS inside
        FROM scoped_points AS s
        CROSS JOIN time_windows AS w
        CROSS JOIN clock AS c
    ) AS t
    GROUP BY scope, time_window, user_id
),

-- the users in the window first, ranked among themselves; a board with none keeps one row (its marker)
ranked AS (
    SELECT
        scope,
        time_window,
        user_id,
        score,
        present,
        CAST(rank() OVER (PARTITION BY scope, time_window ORDER BY present DESC, score DESC) AS bigint)
            AS board_rank,
        count_if(present) OVER (PARTITION BY scope, time_window) AS entries,
        row_number() OVER (PARTITION BY scope, time_window ORDER BY user_id) AS nth
    FROM user_scores
),

boards AS (
    SELECT
        scope, time_window,
        CASE WHEN present THEN board_rank END AS board_rank,
        CASE WHEN present THEN user_id END AS user_id,
        CASE WHEN present THEN score END AS score
    FROM ranked
    WHERE (present AND board_rank <= 1000) OR (entries = 0 AND nth = 1)
),

-- the overall boards exist in an empty lake too
overall AS (
    SELECT 'overall' AS scope, time_window FROM time_windows
)

SELECT
    coalesce(b.scope, o.scope) AS scope,
    coalesce(b.time_window, o.time_window) AS time_window,
    c.as_of,
    b.board_rank,
    b.user_id,
    n.user_name,
    b.score
FROM boards AS b
FULL OUTER JOIN overall AS o
    ON o.scope = b.scope AND o.time_window = b.time_window
CROSS JOIN clock AS c
LEFT JOIN latest_user_names AS n
    ON n.user_id = b.user_id

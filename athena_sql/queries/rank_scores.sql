-- Every user's ranks (streamboard.ranks), read after the board snapshot: the users whose scores or name the
-- batch changed (${rank_users}: every user in a full build, and when the rank store is built again), one row
-- each with every score the window totals hold for them, so that the writer replaces each one's entries
-- whole. Scores change when a window's points enter or leave it too: step 08 marks those rows with the
-- batch as well. A user who is on no board any more (a row the batch set to zero, pruned after this) has
-- scores NULL. scores = 'scope:all:30d:365d' per scope, ';'-separated (scopes are slugs); name_changed says
-- whether the name is newer than the ranks the store holds (batch ${ranks_from}).
-- A batch that changed at least 1 in ${rank_rebuild_every} of the users on the boards reads every user
-- instead (everyone = true on every row), and the writer builds the trees from them rather than stepping
-- them (streamboard.ranks.REBUILD_EVERY: the reasoning).
WITH changed AS (
    SELECT user_id FROM state_window_totals WHERE ${rank_users}
    UNION
    SELECT user_id FROM state_user_names WHERE ${rank_users}
),

scored AS (
    SELECT
        user_id,
        scope || ':' || CAST(score_all AS varchar) || ':' || CAST(score_30d AS varchar) || ':'
        || CAST(score_365d AS varchar) AS scope_scores
    FROM state_window_totals
    WHERE score_all <> 0 OR score_30d <> 0 OR score_365d <> 0
),

busy AS (
    SELECT (SELECT count(*) FROM changed) * ${rank_rebuild_every}
        >= (SELECT count(DISTINCT user_id) FROM scored) AS everyone
),

chosen AS (
    SELECT user_id FROM changed
    UNION
    SELECT t.user_id FROM state_window_totals AS t CROSS JOIN busy AS b WHERE b.everyone
    UNION
    SELECT n.user_id FROM state_user_names AS n CROSS JOIN busy AS b WHERE b.everyone
)

SELECT
    c.user_id,
    arbitrary(n.user_name) AS user_name,
    coalesce(arbitrary(n.batch) > ${ranks_from}, false) AS name_changed,
    array_join(array_agg(s.scope_scores) FILTER (WHERE s.scope_scores IS NOT NULL), ';') AS scores,
    b.everyone
FROM chosen AS c
CROSS JOIN busy AS b
LEFT JOIN scored AS s ON s.user_id = c.user_id
LEFT JOIN state_user_names AS n ON n.user_id = c.user_id
GROUP BY c.user_id, b.everyone

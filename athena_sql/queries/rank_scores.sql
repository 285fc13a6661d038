-- Every user's ranks (streamboard.ranks), read after the board snapshot: the users whose scores or name the
-- batch changed (${rank_users}: every user in a full build, and when the rank store is built again), one row
-- each with every score the window totals hold for them, so that the writer replaces each one's entries
-- whole. Scores change when a window's points enter or leave it too: step 09 marks those rows with the
-- batch as well. A user who is on no board any more (a row the batch set to zero, pruned after this) has
-- scores NULL. scores = '["scope",all,30d,365d]' per scope, ','-separated: a JSON array's items (scopes are
-- slugs), which the writer decodes for every user at once; name_changed says whether the name is newer than the
-- ranks the store holds (batch ${ranks_from}).
-- A batch that changed at least 1 in ${rank_rebuild_every} of the users on the boards reads every user
-- instead (everyone = true on every row), and the writer builds the trees from them rather than stepping
-- them (streamboard.ranks.REBUILD_EVERY: the reasoning).
-- Rows come by user_id: the writer builds or steps in that order (a build's objects then lie in memory in the
-- order it walks them: 1.3-1.5 s less of the encoding of a 20M lake's rebuild of 200,000 users, measured).
-- Each state table is read once (Athena reads a table again for every reference to a named query that
-- reads it: streamboard.sql.scans): every user's row is made, then those changed, or all, are kept.
WITH per_user AS (
    SELECT
        user_id,
        bool_or(${rank_users}) AS hit,
        array_join(array_agg('["' || scope || '",' || CAST(score_all AS varchar) || ',' || CAST(score_30d AS varchar)
            || ',' || CAST(score_365d AS varchar) || ']')
            FILTER (WHERE score_all <> 0 OR score_30d <> 0 OR score_365d <> 0), ',') AS scores
    FROM state_window_totals
    GROUP BY user_id
),

names AS (
    SELECT user_id, user_name, batch, ${rank_users} AS hit
    FROM state_user_names
),

users AS (
    SELECT
        coalesce(p.user_id, n.user_id) AS user_id, n.user_name, n.batch AS name_batch, p.scores,
        coalesce(p.hit, false) OR coalesce(n.hit, false) AS hit
    FROM per_user AS p
    FULL OUTER JOIN names AS n ON n.user_id = p.user_id
),

flagged AS (
    SELECT
        *,
        count_if(hit) OVER () * ${rank_rebuild_every} >= count_if(scores IS NOT NULL) OVER () AS everyone
    FROM users
)

SELECT
    user_id, user_name, coalesce(name_batch > ${ranks_from}, false) AS name_changed, scores, everyone
FROM flagged
WHERE hit OR everyone
ORDER BY user_id

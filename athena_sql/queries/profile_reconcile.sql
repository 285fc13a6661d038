-- The near-real-time profiles' reconcile (streamboard.profiles), read after the board snapshot: for every
-- user the batch covered (all users in a full build; the part predicate keeps this statement's share of them
-- when the reconcile runs in parts), what the lake holds. One 'user' row per user:
--   totals: counted points per category, 'category:points' ';'-separated (the all-time board's, plus those
--           with ts after as_of: a profile counts an event as soon as it is processed);
--   slots:  the points of the rows the lake holds per routing slot from the cut on (they cancel the router's
--           live points of the same rows), 'slot:category:points' ';'-separated;
--   event_id, ts, name: the latest name (none: NULL);
-- and one 'challenge' row per first completion of each challenge the batch touched (all of them in a full
-- build): item_key = challenge_id, name = its category. Categories are slugs, so the lists need no quoting.
-- One row per user, not per fact: a full build reads every player, and each row costs its reader (the
-- Lambda's CSV, the local engine's Python objects) far more than the engine's aggregation does. Timestamps
-- come as the events carry them (2026-12-01T15:45:33.123Z).
WITH totals AS (
    SELECT user_id, array_join(array_agg(category || ':' || CAST(points AS varchar)), ';') AS totals
    FROM (
        SELECT user_id, category, sum(points) AS points
        FROM (
            SELECT user_id, scope AS category, score_all AS points
            FROM state_window_totals
            WHERE scope <> 'overall' AND ${profile_users} AND ${profile_part}
            UNION ALL
            SELECT user_id, category, points
            FROM state_contributions
            WHERE ts > TIMESTAMP '${as_of}' AND ${profile_users} AND ${profile_part}
        ) AS t
        GROUP BY user_id, category
    ) AS c
    GROUP BY user_id
),

slots AS (
    SELECT user_id, array_join(array_agg(CAST(slot AS varchar) || ':' || category || ':' || CAST(points AS varchar)),
        ';') AS slots
    FROM (
        SELECT user_id, category, CAST(floor(to_unixtime(routed_at) / ${slot_seconds}) AS bigint) AS slot,
            sum(points) AS points
        FROM state_profile_rows
        WHERE routed_at >= TIMESTAMP '${profile_cut_ts}' AND ${profile_users} AND ${profile_part}
        GROUP BY user_id, category, CAST(floor(to_unixtime(routed_at) / ${slot_seconds}) AS bigint)
    ) AS s
    GROUP BY user_id
),

names AS (
    SELECT user_id, event_id, substr(date_format(ts, '%Y-%m-%dT%H:%i:%s.%f'), 1, 23) || 'Z' AS ts, user_name
    FROM state_user_names
    WHERE ${profile_users} AND ${profile_part}
)

SELECT
    'user' AS kind, coalesce(t.user_id, s.user_id, n.user_id) AS user_id, t.totals, s.slots,
    CAST(NULL AS varchar) AS item_key, CAST(NULL AS bigint) AS points, n.event_id, n.ts, n.user_name AS name
FROM totals AS t
FULL OUTER JOIN slots AS s ON s.user_id = t.user_id
FULL OUTER JOIN names AS n ON n.user_id = coalesce(t.user_id, s.user_id)
UNION ALL
SELECT 'challenge', f.user_id, NULL, NULL, f.challenge_id, f.points, f.event_id,
    substr(date_format(f.ts, '%Y-%m-%dT%H:%i:%s.%f'), 1, 23) || 'Z', f.category
FROM state_challenge_firsts AS f
WHERE ${profile_challenges} AND ${profile_part}

-- The near-real-time profiles' reconcile (streamboard.profiles), read after the board snapshot: for every
-- user the batch covered (all users in a full build; the part predicate keeps this statement's share of them
-- when the reconcile runs in parts), what the lake holds, one row per fact, by kind:
-- 'total': counted points per category (the all-time board's, plus those with ts after as_of: a profile
--          counts an event as soon as it is processed);
-- 'slot': the points of the rows the lake holds per routing slot from the cut on (they cancel the
--         router's live points of the same rows);
-- 'name': the latest name; 'challenge': the first completion of each challenge the batch touched (all of
-- them in a full build). Timestamps come as the events carry them (2026-12-01T15:45:33.123Z): a full build
-- reads a name and a first per user and challenge of the whole lake, and the text costs its reader nothing.
SELECT
    'total' AS kind, user_id, scope AS item_key, CAST(NULL AS bigint) AS slot, score_all AS points,
    CAST(NULL AS varchar) AS event_id, CAST(NULL AS varchar) AS ts, CAST(NULL AS varchar) AS name
FROM state_window_totals
WHERE scope <> 'overall' AND ${profile_users} AND ${profile_part}
UNION ALL
SELECT 'total', user_id, category, NULL, sum(points), NULL, NULL, NULL
FROM state_contributions
WHERE ts > TIMESTAMP '${as_of}' AND ${profile_users} AND ${profile_part}
GROUP BY user_id, category
UNION ALL
SELECT 'slot', user_id, category, CAST(floor(to_unixtime(routed_at) / ${slot_seconds}) AS bigint), sum(points), NULL,
    NULL, NULL
FROM state_profile_rows
WHERE routed_at >= TIMESTAMP '${profile_cut_ts}' AND ${profile_users} AND ${profile_part}
GROUP BY user_id, category, CAST(floor(to_unixtime(routed_at) / ${slot_seconds}) AS bigint)
UNION ALL
SELECT 'name', user_id, NULL, NULL, NULL, event_id,
    substr(date_format(ts, '%Y-%m-%dT%H:%i:%s.%f'), 1, 23) || 'Z', user_name
FROM state_user_names
WHERE ${profile_users} AND ${profile_part}
UNION ALL
SELECT 'challenge', f.user_id, f.challenge_id, NULL, f.points, f.event_id,
    substr(date_format(f.ts, '%Y-%m-%dT%H:%i:%s.%f'), 1, 23) || 'Z', f.category
FROM state_challenge_firsts AS f
WHERE ${profile_challenges} AND ${profile_part}

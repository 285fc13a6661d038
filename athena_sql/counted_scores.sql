-- counted_scores: the score events that count towards leaderboards and profiles.
-- An event with a challenge_id counts only for the user's first completion of that
-- challenge: earliest ts, then smallest event_id. Events without one always count.
WITH completions AS (
    SELECT
        event_id,
        user_id,
        category,
        points,
        challenge_id,
        ts,
        row_number() OVER (PARTITION BY user_id, challenge_id ORDER BY ts, event_id) AS completion_number
    FROM score_events
),

counted AS (
    SELECT event_id, user_id, category, points, challenge_id, ts
    FROM completions
    WHERE challenge_id IS NULL OR completion_number = 1
)

SELECT event_id, user_id, category, points, challenge_id, ts
FROM counted

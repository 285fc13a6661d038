-- latest_user_names: the display name each user sent last (latest ts, then largest event_id).
-- Every unique score event carrying a user_name counts, repeated challenges included.
WITH named AS (
    SELECT
        user_id,
        user_name,
        row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, event_id DESC) AS recency
    FROM score_events
    WHERE user_name IS NOT NULL
)

SELECT user_id, user_name
FROM named
WHERE recency = 1

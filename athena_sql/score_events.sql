-- score_events: every score event once, however often it was delivered.
-- The stream and Firehose deliver at least once, and clients retry with the same
-- event_id: the first delivery to reach the lake is kept.
WITH deliveries AS (
    SELECT
        event_id,
        user_id,
        category,
        points,
        challenge_id,
        user_name,
        ts,
        received_at,
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY received_at, year, month, day, hour, points, category, user_id
        ) AS delivery_number
    FROM score
),

unique_events AS (
    SELECT event_id, user_id, category, points, challenge_id, user_name, ts, received_at
    FROM deliveries
    WHERE delivery_number = 1
)

SELECT event_id, user_id, category, points, challenge_id, user_name, ts, received_at
FROM unique_events

-- score_events: every score event once per dedupe horizon, however often it was delivered.
-- The stream and Firehose deliver at least once, and clients retry with the same event_id.
-- A delivery is one (event_id, received_at): copies of it (re-read or re-delivered records) are one.
-- A delivery counts when no earlier delivery of its event_id was received within the horizon before
-- it (${dedupe_horizon_days} days); so an event_id counts once while its deliveries keep arriving
-- within the horizon of each other, and a delivery later than that counts again.
WITH copies AS (
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
            PARTITION BY event_id, received_at
            ORDER BY year, month, day, hour, points, category, user_id
        ) AS copy_number
    FROM score
),

deliveries AS (
    SELECT
        event_id,
        user_id,
        category,
        points,
        challenge_id,
        user_name,
        ts,
        received_at,
        lag(received_at) OVER (PARTITION BY event_id ORDER BY received_at) AS previous_received_at
    FROM copies
    WHERE copy_number = 1
),

unique_events AS (
    SELECT event_id, user_id, category, points, challenge_id, user_name, ts, received_at
    FROM deliveries
    WHERE previous_received_at IS NULL
       OR received_at > previous_received_at + INTERVAL '${dedupe_horizon_days}' DAY
)

SELECT event_id, user_id, category, points, challenge_id, user_name, ts, received_at
FROM unique_events

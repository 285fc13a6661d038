-- Each user's first completion of each challenge, with the batch's completions. Idempotent: the
-- earliest (ts, event_id) wins however often this runs.
MERGE INTO state_challenge_firsts AS f
USING (
    SELECT user_id, challenge_id, event_id, ts, category, points
    FROM (
        SELECT
            user_id,
            challenge_id,
            event_id,
            ts,
            category,
            points,
            row_number() OVER (PARTITION BY user_id, challenge_id ORDER BY ts, event_id) AS completion_number
        FROM stage_status
        WHERE batch = ${batch} AND challenge_id IS NOT NULL
    ) AS c
    WHERE completion_number = 1
) AS s
ON f.user_id = s.user_id AND f.challenge_id = s.challenge_id
WHEN MATCHED AND (s.ts < f.ts OR (s.ts = f.ts AND s.event_id < f.event_id)) THEN
    UPDATE SET event_id = s.event_id, ts = s.ts, category = s.category, points = s.points, batch = ${batch}
WHEN NOT MATCHED THEN
    INSERT (user_id, challenge_id, event_id, ts, category, points, batch)
    VALUES (s.user_id, s.challenge_id, s.event_id, s.ts, s.category, s.points, ${batch})

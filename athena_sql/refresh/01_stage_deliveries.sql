-- A batch's new deliveries: the score rows of its input partitions, one per delivery (event_id,
-- received_at: a re-read or re-delivered copy of a delivery is the same delivery), that no earlier
-- batch has seen. Idempotent: a batch's rows are written once.
INSERT INTO stage_deliveries
WITH input_rows AS (
    SELECT
        event_id,
        received_at,
        user_id,
        category,
        points,
        challenge_id,
        user_name,
        ts,
        row_number() OVER (
            PARTITION BY event_id, received_at
            ORDER BY year, month, day, hour, points, category, user_id
        ) AS copy_number
    FROM score
    WHERE ${input}
),

new_deliveries AS (
    SELECT i.event_id, i.received_at, i.user_id, i.category, i.points, i.challenge_id, i.user_name, i.ts
    FROM input_rows AS i
    WHERE i.copy_number = 1
      AND NOT EXISTS (
          SELECT 1 FROM state_deliveries AS d
          WHERE d.event_id = i.event_id AND d.received_at = i.received_at
      )
)

SELECT ${batch} AS batch, event_id, received_at, user_id, category, points, challenge_id, user_name, ts
FROM new_deliveries
WHERE NOT EXISTS (SELECT 1 FROM stage_deliveries WHERE batch = ${batch})

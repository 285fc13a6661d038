-- The ledger, in event-time order: the points of every counted delivery without a challenge, and of each
-- first completion of a challenge. Idempotent: a batch's rows are written once.
INSERT INTO state_contributions
SELECT ${batch} AS batch, user_id, category, points, ts
FROM (
    SELECT user_id, category, points, ts
    FROM state_deliveries
    WHERE batch = ${batch} AND challenge_id IS NULL AND counted
    UNION ALL
    SELECT user_id, category, points, ts
    FROM state_challenge_firsts
    WHERE batch = ${batch}
) AS counted_points
WHERE NOT EXISTS (SELECT 1 FROM state_contributions WHERE batch = ${batch})
ORDER BY ts

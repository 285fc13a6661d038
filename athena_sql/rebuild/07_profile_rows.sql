-- The profiles' view of the lake's recent rows (see ../refresh/10_profile_rows.sql): every score row
-- without a challenge routed from the profiles' cut on, once per routing of a delivery.
-- Idempotent: a batch's rows are written once.
INSERT INTO state_profile_rows
SELECT user_id, event_id, received_at, routed_at, arbitrary(category), arbitrary(points), ${batch}
FROM score
WHERE ${input}
  AND challenge_id IS NULL
  AND routed_at >= TIMESTAMP '${profile_cut_ts}'
  AND NOT EXISTS (SELECT 1 FROM state_profile_rows WHERE batch = ${batch})
GROUP BY user_id, event_id, received_at, routed_at

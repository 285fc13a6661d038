-- The batch's score rows without a challenge routed from the profiles' cut on that no batch has recorded
-- (the input's newest hours; rows routed earlier are in the lake whole, and a reconcile drops their slots
-- from the profiles). Rows count here whether or not they count on the boards: the router added every
-- routing of every delivery to the profiles' live points. Idempotent: a batch's rows are written once.
INSERT INTO state_profile_rows
SELECT user_id, event_id, received_at, routed_at, arbitrary(category), arbitrary(points), ${batch}
FROM score AS i
WHERE ${input}
  AND challenge_id IS NULL
  AND routed_at >= TIMESTAMP '${profile_cut_ts}'
  AND NOT EXISTS (SELECT 1 FROM state_profile_rows WHERE batch = ${batch})
  AND NOT EXISTS (
      SELECT 1 FROM state_profile_rows AS r
      WHERE r.event_id = i.event_id AND r.received_at = i.received_at AND r.routed_at = i.routed_at
  )
GROUP BY user_id, event_id, received_at, routed_at

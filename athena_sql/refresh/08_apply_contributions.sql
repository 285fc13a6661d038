-- Append the batch's signed points to the ledger, in event-time order (so that reads by ts range
-- touch few files). Idempotent: a batch's rows are written once.
INSERT INTO state_contributions
SELECT batch, event_id, user_id, category, points, ts
FROM stage_contributions
WHERE batch = ${batch}
  AND NOT EXISTS (SELECT 1 FROM state_contributions WHERE batch = ${batch})
ORDER BY ts

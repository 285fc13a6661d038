-- How many counted scores each category has. Idempotent: a batch's rows are written once.
INSERT INTO state_scopes
SELECT category AS scope, count(*) AS counted, ${batch} AS batch
FROM state_contributions
WHERE batch = ${batch}
  AND NOT EXISTS (SELECT 1 FROM state_scopes WHERE batch = ${batch})
GROUP BY category

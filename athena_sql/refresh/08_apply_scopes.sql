-- How many counted scores each category has, with the batch's changes (a taken-back score counts -1).
-- Idempotent: a row the batch already changed carries its batch number.
MERGE INTO state_scopes AS t
USING (
    SELECT category AS scope, sum(CASE WHEN points > 0 THEN 1 ELSE -1 END) AS counted
    FROM state_contributions
    WHERE batch = ${batch}
    GROUP BY category
) AS s
ON t.scope = s.scope
WHEN MATCHED AND t.batch < ${batch} THEN
    UPDATE SET counted = t.counted + s.counted, batch = ${batch}
WHEN NOT MATCHED THEN
    INSERT (scope, counted, batch) VALUES (s.scope, s.counted, ${batch})

-- Staging of earlier batches is no longer needed.
DELETE FROM stage_contributions
WHERE batch < ${batch}

-- Staging of earlier batches is no longer needed.
DELETE FROM stage_status
WHERE batch < ${batch}

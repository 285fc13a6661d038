-- Staging of earlier batches is no longer needed.
DELETE FROM stage_deliveries
WHERE batch < ${batch}

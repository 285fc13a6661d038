-- The batch's staged keys are no longer needed once its steps are done (as stage_status, step 13).
DELETE FROM stage_keys
WHERE batch <= ${batch}

-- The batch's staging is no longer needed once its steps are done (a resumed batch reruns only the steps
-- it had not finished): cleared here, so that the next batch does not pay for this one's.
DELETE FROM stage_status
WHERE batch <= ${batch}

-- Keep the totals of this batch and the one before.
DELETE FROM state_window_totals
WHERE batch < ${prev_batch}

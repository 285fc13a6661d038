-- The refresh log needs only the batch before this one (the next plan starts from it); older batches go.
DELETE FROM state_refreshes
WHERE batch < ${prev_batch}

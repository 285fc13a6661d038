-- Rows routed before the profiles' cut are in the lake whole; the reconcile has dropped their slots from
-- the profiles it covered.
DELETE FROM state_profile_rows
WHERE routed_at < TIMESTAMP '${profile_cut_ts}'

-- Points at or before the start of the longest window (365 days) as of now can no longer enter or leave
-- a window: the next batch steps from here on.
DELETE FROM state_contributions
WHERE ts <= date_add('day', -365, TIMESTAMP '${as_of}')

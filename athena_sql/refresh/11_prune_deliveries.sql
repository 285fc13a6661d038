-- Forget deliveries received longer ago than the horizon plus the longest arrival delay: no delivery
-- still to come can be within the horizon of them.
DELETE FROM state_deliveries
WHERE received_at < date_add('day', -${retention_days}, TIMESTAMP '${as_of}')

-- state_deliveries: the deliveries received within the dedupe horizon plus the longest arrival delay
-- (older ones can no longer change what counts); counted = whether the delivery counts.
CREATE TABLE IF NOT EXISTS state_deliveries (
    event_id varchar,
    received_at timestamp(3),
    user_id varchar,
    category varchar,
    points bigint,
    challenge_id varchar,
    ts timestamp(3),
    counted boolean,
    batch bigint
)

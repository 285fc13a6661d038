-- state_deliveries: the deliveries received within the dedupe horizon plus the longest arrival delay
-- (older ones can no longer change what counts); counted = whether the delivery counts. id_key is a 64-bit
-- hash of event_id: a batch finds the known deliveries of its ids by scanning 8 bytes a delivery, not 36.
CREATE TABLE IF NOT EXISTS state_deliveries (
    id_key bigint,
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

-- state_deliveries: the deliveries received within the dedupe horizon plus the longest arrival delay
-- (older ones can no longer change what counts); counted = whether the delivery counts. (id_key, id_key2)
-- is the event id's 128-bit key (two 64-bit hashes of it: xxhash64 and md5's first half): a batch looks
-- its ids up by the key, the delivery times and the counting alone, 25 bytes a delivery instead of the
-- whole row. Two ids with one key are as unlikely as two random UUIDs alike.
CREATE TABLE IF NOT EXISTS state_deliveries (
    id_key bigint,
    id_key2 bigint,
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

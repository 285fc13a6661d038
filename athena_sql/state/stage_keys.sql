-- stage_keys: for a batch, the keys of its deliveries and of every known one whose counting it may change,
-- with whether each counts now, counted before, and was read again by the batch (staging, narrow: the
-- window over every delivery of the batch's events runs once, and step 02 adds the rows' values).
CREATE TABLE IF NOT EXISTS stage_keys (
    batch bigint,
    id_key bigint,
    id_key2 bigint,
    received_at timestamp(3),
    counted boolean,
    was_counted boolean,
    read_again boolean
)

-- stage_contributions: the signed points a batch adds to the ledger (staging).
CREATE TABLE IF NOT EXISTS stage_contributions (
    batch bigint,
    event_id varchar,
    user_id varchar,
    category varchar,
    points bigint,
    ts timestamp(3)
)

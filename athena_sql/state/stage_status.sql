-- stage_status: for a batch, every delivery whose counting it decided or changed (staging).
CREATE TABLE IF NOT EXISTS stage_status (
    batch bigint,
    event_id varchar,
    received_at timestamp(3),
    user_id varchar,
    category varchar,
    points bigint,
    challenge_id varchar,
    ts timestamp(3),
    counted boolean,
    was_counted boolean
)

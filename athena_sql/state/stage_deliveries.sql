-- stage_deliveries: a batch's new deliveries (staging; kept until the next batch is done).
CREATE TABLE IF NOT EXISTS stage_deliveries (
    batch bigint,
    event_id varchar,
    received_at timestamp(3),
    user_id varchar,
    category varchar,
    points bigint,
    challenge_id varchar,
    user_name varchar,
    ts timestamp(3)
)

-- stage_status: for a batch, its new deliveries and every known one whose counting it may change, with
-- whether each counts now and counted before (staging; kept until the next batch is done).
CREATE TABLE IF NOT EXISTS stage_status (
    batch bigint,
    event_id varchar,
    received_at timestamp(3),
    user_id varchar,
    category varchar,
    points bigint,
    challenge_id varchar,
    user_name varchar,
    ts timestamp(3),
    counted boolean,
    was_counted boolean
)

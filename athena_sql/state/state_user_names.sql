-- state_user_names: the name each user sent last (latest ts, then largest event_id).
CREATE TABLE IF NOT EXISTS state_user_names (
    user_id varchar,
    user_name varchar,
    ts timestamp(3),
    event_id varchar,
    batch bigint
)

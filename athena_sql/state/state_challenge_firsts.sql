-- state_challenge_firsts: each user's first completion of each challenge (earliest ts, then smallest
-- event_id): the only completion that counts.
CREATE TABLE IF NOT EXISTS state_challenge_firsts (
    user_id varchar,
    challenge_id varchar,
    event_id varchar,
    ts timestamp(3),
    category varchar,
    points bigint,
    batch bigint
)

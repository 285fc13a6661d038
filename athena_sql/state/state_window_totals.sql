-- state_window_totals: each user's score on every board (scope x window) as of a batch's as_of;
-- a batch's totals are the previous batch's, stepped forward. The last two batches are kept.
CREATE TABLE IF NOT EXISTS state_window_totals (
    batch bigint,
    scope varchar,
    time_window varchar,
    user_id varchar,
    score bigint
)

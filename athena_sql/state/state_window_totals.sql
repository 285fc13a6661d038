-- state_window_totals: each user's score on every board (scope x window) as of the last batch's as_of;
-- batch = the last batch that changed the row.
CREATE TABLE IF NOT EXISTS state_window_totals (
    batch bigint,
    scope varchar,
    time_window varchar,
    user_id varchar,
    score bigint
)

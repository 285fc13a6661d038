-- state_window_totals: each user's score on every board as of the last batch's as_of: one row per scope
-- (overall or a category) and user with the three windows side by side, so that a batch merges one row
-- where a user's score changes in a scope; batch = the last batch that changed the row.
CREATE TABLE IF NOT EXISTS state_window_totals (
    batch bigint,
    scope varchar,
    user_id varchar,
    score_all bigint,
    score_30d bigint,
    score_365d bigint
)

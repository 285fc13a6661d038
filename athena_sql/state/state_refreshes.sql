-- state_refreshes: the refresh log. Per batch, a 'plan' row (what the batch reads and as of when),
-- one row per finished step, and 'done'. A batch without 'done' is resumed with its own plan.
CREATE TABLE IF NOT EXISTS state_refreshes (
    batch bigint,
    step varchar,
    as_of timestamp(3),
    prev_batch bigint,
    prev_as_of timestamp(3),
    input varchar,
    recorded_at timestamp(3)
)

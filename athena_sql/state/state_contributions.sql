-- state_contributions: the ledger of counted points by event time, written in ts order: every change a
-- batch made, signed (a delivery that stops counting, or a challenge completion that is no longer the
-- first, is taken back with negative points). Points older than the longest window are forgotten: they
-- can no longer enter or leave one. Only what the windows sum is kept (no event ids: the ledger
-- is as long as a year of counted events).
CREATE TABLE IF NOT EXISTS state_contributions (
    batch bigint,
    user_id varchar,
    category varchar,
    points bigint,
    ts timestamp(3)
)

-- state_contributions: the ledger of counted points by event time (partitioned by day of ts on AWS):
-- every change a batch made, signed (a delivery that stops counting, or a challenge completion that
-- is no longer the first, is taken back with negative points).
CREATE TABLE IF NOT EXISTS state_contributions (
    batch bigint,
    event_id varchar,
    user_id varchar,
    category varchar,
    points bigint,
    ts timestamp(3)
)

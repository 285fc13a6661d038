-- board_clock: the instant (as_of) at which every leaderboard is computed.
-- One row: now, in UTC, to the second. Every board of one refresh shares it.
WITH now_utc AS (
    SELECT CAST(date_trunc('second', current_timestamp AT TIME ZONE 'UTC') AS timestamp(3)) AS as_of
)

SELECT as_of
FROM now_utc

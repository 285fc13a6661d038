-- Every board recomputed from the whole lake through the analyst views, at board_clock's as_of, in
-- display order: what the incremental refresh (board_snapshot.sql over its state) must equal.
SELECT scope, time_window, as_of, board_rank, user_id, user_name, score
FROM leaderboards
ORDER BY scope, time_window, board_rank, user_id

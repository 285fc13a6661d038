-- The query a refresh runs: every board's rows at one as_of, in display order.
SELECT scope, time_window, as_of, board_rank, user_id, user_name, score
FROM leaderboards
ORDER BY scope, time_window, board_rank, user_id

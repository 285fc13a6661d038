-- A user whose points all left a window (or were taken back) is no longer on that board.
DELETE FROM state_window_totals
WHERE score = 0

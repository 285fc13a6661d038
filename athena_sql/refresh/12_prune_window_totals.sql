-- A user whose points all left every window of a scope (or were taken back) is no longer on its boards.
DELETE FROM state_window_totals
WHERE score_all = 0 AND score_30d = 0 AND score_365d = 0

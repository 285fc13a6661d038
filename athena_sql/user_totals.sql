-- user_totals: each user's counted points per category, all time (the profiles' source of truth
-- in the lake; the profile store keeps the same totals in near real time).
WITH per_category AS (
    SELECT user_id, category, CAST(sum(points) AS bigint) AS points
    FROM counted_scores
    GROUP BY user_id, category
)

SELECT
    user_id,
    category,
    points,
    CAST(sum(points) OVER (PARTITION BY user_id) AS bigint) AS total
FROM per_category

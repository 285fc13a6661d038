-- state_profile_rows: for the near-real-time profiles (streamboard.profiles), the lake's score rows without
-- a challenge that the router routed from the profiles' cut on: one per routing of a delivery (event_id,
-- received_at, routed_at; a second copy of one row is the same row). The router added each of them to a
-- profile's live points of its routing slot; a reconcile sets their sums per slot in each profile it
-- covers, so that those live points stop counting once the lake holds them.
CREATE TABLE IF NOT EXISTS state_profile_rows (
    user_id varchar,
    event_id varchar,
    received_at timestamp(3),
    routed_at timestamp(3),
    category varchar,
    points bigint,
    batch bigint
)

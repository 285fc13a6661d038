-- state_scopes: per category, how many counted scores it has; a category with any has boards (empty
-- in a window without scores).
CREATE TABLE IF NOT EXISTS state_scopes (
    scope varchar,
    counted bigint,
    batch bigint
)

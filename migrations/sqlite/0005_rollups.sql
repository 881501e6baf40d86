-- netpulse schema, version 5 (SQLite): 1-minute and 1-hour rollups.
--
-- As on PostgreSQL (migrations/postgres/0008_rollups.sql), maintenance seals each whole
-- hour once it is 2 h old: its numeric samples become one `rollups_1m` row per series
-- (the hour's 1-minute aggregates, packed by store/src/rollup.rs), and after the last
-- hour of a UTC day one `rollups_1h` row per series holds the day's 1-hour aggregates.
-- Step queries read them for sealed hours; retention deletes expired rows. Raw samples
-- stay raw here (no compressed blocks). Timestamps are ns since the epoch.

CREATE TABLE rollups_1m (
    series_id INTEGER NOT NULL,
    hour      INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (series_id, hour)
) STRICT, WITHOUT ROWID;

CREATE TABLE rollups_1h (
    series_id INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (series_id, day)
) STRICT, WITHOUT ROWID;

-- How far sealing has gone: hours in [rolled_up_from, done_until) have rollups.
CREATE TABLE seal_progress (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    rolled_up_from INTEGER NOT NULL,
    done_until     INTEGER NOT NULL
) STRICT;

-- netpulse schema, version 1 (SQLite, single-node mode).
--
-- Timestamps are INTEGER nanoseconds since the Unix epoch, exactly as in the model.

CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    address     TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'connecting', 'synced', 'degraded', 'unreachable')),
    last_error  TEXT,
    state_since INTEGER,
    -- Newest sample of any series of the device, maintained on write so listings never scan
    -- samples.
    last_sample INTEGER
) STRICT;

CREATE TABLE series (
    id              INTEGER PRIMARY KEY,
    device_id       INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- Canonical path string (model::Path Display form).
    path            TEXT    NOT NULL,
    -- Kind of the first value seen; reading reconstructs numbers with it.
    kind            TEXT    NOT NULL CHECK (kind IN ('int', 'uint', 'float', 'bool', 'string')),
    -- Newest sample, maintained on write.
    last_ts         INTEGER,
    last_value      REAL,
    last_value_text TEXT,
    UNIQUE (device_id, path)
) STRICT;

-- Clustered on (series_id, ts): range reads of one series are one contiguous b-tree walk.
CREATE TABLE samples (
    series_id  INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    ts         INTEGER NOT NULL,
    -- Numbers (and booleans as 0/1) go here, text in value_text. SQLite stores a NaN as NULL.
    value      REAL,
    value_text TEXT,
    PRIMARY KEY (series_id, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE device_events (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts        INTEGER NOT NULL,
    state     TEXT    NOT NULL,
    error     TEXT
) STRICT;

CREATE INDEX device_events_device_ts ON device_events (device_id, ts);

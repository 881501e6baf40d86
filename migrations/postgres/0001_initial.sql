-- netpulse schema, version 1 (PostgreSQL 15+).
--
-- Timestamps are `timestamptz`, whose resolution is one microsecond: the store truncates the
-- model's nanosecond timestamps towards negative infinity on write, so two samples of one
-- series less than 1 us apart are one sample here.
--
-- Text is ordered with COLLATE "C" in queries so listings sort exactly as in Rust and SQLite.

CREATE TABLE devices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    address     text        NOT NULL DEFAULT '',
    state       text        NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'connecting', 'synced', 'degraded', 'unreachable')),
    last_error  text,
    state_since timestamptz,
    -- Newest sample of any series of the device, maintained on write so listings never scan
    -- samples.
    last_sample timestamptz
);

CREATE TABLE series (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id       bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- Canonical path string (model::Path Display form).
    path            text   NOT NULL,
    -- Kind of the first value seen; reading reconstructs numbers with it.
    kind            text   NOT NULL CHECK (kind IN ('int', 'uint', 'float', 'bool', 'string')),
    -- Newest sample, maintained on write.
    last_ts         timestamptz,
    last_value      double precision,
    last_value_text text,
    -- Also serves "series of a device, ordered by path" and the per-device series count.
    UNIQUE (device_id, path)
);

CREATE TABLE samples (
    series_id  bigint           NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    ts         timestamptz      NOT NULL,
    -- Numbers (and booleans as 0/1) go here, text in value_text.
    value      double precision,
    value_text text,
    -- Makes writes idempotent and serves range reads of one series.
    PRIMARY KEY (series_id, ts)
);

CREATE TABLE device_events (
    device_id bigint      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts        timestamptz NOT NULL,
    state     text        NOT NULL,
    error     text
);

CREATE INDEX device_events_device_ts ON device_events (device_id, ts);

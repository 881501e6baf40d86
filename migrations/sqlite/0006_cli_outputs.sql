-- netpulse schema, version 6 (SQLite): raw output of CLI (SSH show) commands and the
-- changes between consecutive outputs, as on PostgreSQL
-- (migrations/postgres/0009_cli_outputs.sql). Timestamps are ns since the epoch.

CREATE TABLE cli_outputs (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command   TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    output    TEXT    NOT NULL,
    truncated INTEGER NOT NULL CHECK (truncated IN (0, 1)),
    PRIMARY KEY (device_id, command)
) STRICT;

CREATE TABLE cli_changes (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command     TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    previous_ts INTEGER NOT NULL,
    diff        TEXT    NOT NULL,
    added       INTEGER NOT NULL CHECK (added >= 0),
    removed     INTEGER NOT NULL CHECK (removed >= 0)
) STRICT;

-- A device's changes, newest first.
CREATE INDEX cli_changes_device_ts ON cli_changes (device_id, ts);
-- Retention deletes by age across devices.
CREATE INDEX cli_changes_ts ON cli_changes (ts);

-- netpulse schema, version 7 (SQLite): structured snapshots of parsed CLI outputs, as on
-- PostgreSQL (migrations/postgres/0010_cli_snapshots.sql). Timestamps are ns since the
-- epoch; `rows_json` is canonical JSON text (keys sorted), which is how snapshots are compared.

CREATE TABLE cli_snapshots (
    id        INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command   TEXT    NOT NULL,
    template  TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    last_seen INTEGER NOT NULL CHECK (last_seen >= ts),
    row_count INTEGER NOT NULL CHECK (row_count >= 0),
    truncated INTEGER NOT NULL CHECK (truncated IN (0, 1)),
    rows_json TEXT    NOT NULL CHECK (json_valid(rows_json) AND json_type(rows_json) = 'array')
) STRICT;

-- The latest and the history of one command.
CREATE INDEX cli_snapshots_command_ts ON cli_snapshots (device_id, command, ts);
-- The history of every command of a device.
CREATE INDEX cli_snapshots_device_ts ON cli_snapshots (device_id, ts);
-- Retention deletes by age across devices.
CREATE INDEX cli_snapshots_last_seen ON cli_snapshots (last_seen);

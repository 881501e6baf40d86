-- netpulse schema, version 10 (PostgreSQL): structured snapshots of parsed CLI outputs.
--
-- One row per snapshot that differs from the previous one of its (device, command):
-- `ts` is when it was first seen, `last_seen` when an equal one was last seen (an
-- unchanged snapshot only moves it). The latest of a command is its newest row by
-- (ts, id). `rows_json` is the parsed table, an array of objects (column name to string, or to
-- an array of strings for TextFSM List values), bounded by the store (store/src/cli.rs).
-- Writers of one (device, command) serialise on a transaction advisory lock. Maintenance
-- deletes rows last seen before the raw-sample retention, except the latest of each
-- command.

CREATE TABLE cli_snapshots (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id bigint      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command   text        NOT NULL,
    template  text        NOT NULL,
    ts        timestamptz NOT NULL,
    last_seen timestamptz NOT NULL CHECK (last_seen >= ts),
    row_count integer     NOT NULL CHECK (row_count >= 0),
    truncated boolean     NOT NULL,
    rows_json jsonb       NOT NULL CHECK (jsonb_typeof(rows_json) = 'array')
);

-- The latest and the history of one command.
CREATE INDEX cli_snapshots_command_ts ON cli_snapshots (device_id, command, ts);
-- The history of every command of a device.
CREATE INDEX cli_snapshots_device_ts ON cli_snapshots (device_id, ts);
-- Retention deletes by age across devices.
CREATE INDEX cli_snapshots_last_seen ON cli_snapshots (last_seen);

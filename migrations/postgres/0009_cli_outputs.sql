-- netpulse schema, version 9 (PostgreSQL): raw output of CLI (SSH show) commands and the
-- changes between consecutive outputs.
--
-- `cli_outputs` keeps the latest output of each (device, command): `ts` is when it was
-- last seen (an unchanged output only moves it). `cli_changes` keeps one row per change,
-- with a bounded unified diff (store/src/cli.rs); maintenance deletes rows older than the
-- raw-sample retention. Text never holds NUL (the store writes U+FFFD instead).

CREATE TABLE cli_outputs (
    device_id bigint      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command   text        NOT NULL,
    ts        timestamptz NOT NULL,
    output    text        NOT NULL,
    truncated boolean     NOT NULL,
    PRIMARY KEY (device_id, command)
);

CREATE TABLE cli_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   bigint      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command     text        NOT NULL,
    ts          timestamptz NOT NULL,
    previous_ts timestamptz NOT NULL,
    diff        text        NOT NULL,
    added       bigint      NOT NULL CHECK (added >= 0),
    removed     bigint      NOT NULL CHECK (removed >= 0)
);

-- A device's changes, newest first.
CREATE INDEX cli_changes_device_ts ON cli_changes (device_id, ts);
-- Retention deletes by age across devices.
CREATE INDEX cli_changes_ts ON cli_changes (ts);

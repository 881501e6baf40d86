-- netpulse schema, version 8: 1-minute and 1-hour rollups; compressed blocks by day.
--
-- The maintenance task seals each whole hour once it is older than the compression age
-- (2 h by default): it rolls the hour's numeric samples up into 1-minute aggregates (one
-- row per series and hour, `rollups_1m`), packs them into blocks (`sample_blocks`, as in
-- version 7), and after the last hour of a UTC day writes the day's 1-hour aggregates
-- (one row per series and day, `rollups_1h`). Rows hold aggregates packed by
-- store/src/rollup.rs. Each table is partitioned by time so that retention drops whole
-- partitions (raw and blocks 7 days, minutes 90 days, hours 2 years by default): days
-- for blocks and minutes, months for hours; maintenance creates the partitions as it
-- reaches them, the default partitions catch anything else.

ALTER TABLE sample_blocks RENAME TO sample_blocks_before_partitioning;
ALTER TABLE sample_blocks_before_partitioning
    RENAME CONSTRAINT sample_blocks_pkey TO sample_blocks_before_partitioning_pkey;

CREATE TABLE sample_blocks (
    series_id bigint      NOT NULL,
    first_ts  timestamptz NOT NULL,
    last_ts   timestamptz NOT NULL,
    data      bytea       NOT NULL,
    PRIMARY KEY (series_id, first_ts)
) PARTITION BY RANGE (first_ts);
-- Blocks are compressed already (see version 7); partitions are created LIKE the parent
-- including its storage setting.
ALTER TABLE sample_blocks ALTER COLUMN data SET STORAGE MAIN;
CREATE TABLE sample_blocks_default PARTITION OF sample_blocks DEFAULT;
ALTER TABLE sample_blocks_default ALTER COLUMN data SET STORAGE MAIN;

INSERT INTO sample_blocks (series_id, first_ts, last_ts, data)
    SELECT series_id, first_ts, last_ts, data FROM sample_blocks_before_partitioning;
DROP TABLE sample_blocks_before_partitioning;

CREATE TABLE rollups_1m (
    series_id bigint      NOT NULL,
    hour      timestamptz NOT NULL,
    data      bytea       NOT NULL,
    PRIMARY KEY (series_id, hour)
) PARTITION BY RANGE (hour);
ALTER TABLE rollups_1m ALTER COLUMN data SET STORAGE MAIN;
CREATE TABLE rollups_1m_default PARTITION OF rollups_1m DEFAULT;
ALTER TABLE rollups_1m_default ALTER COLUMN data SET STORAGE MAIN;

CREATE TABLE rollups_1h (
    series_id bigint      NOT NULL,
    day       timestamptz NOT NULL,
    data      bytea       NOT NULL,
    PRIMARY KEY (series_id, day)
) PARTITION BY RANGE (day);
ALTER TABLE rollups_1h ALTER COLUMN data SET STORAGE MAIN;
CREATE TABLE rollups_1h_default PARTITION OF rollups_1h DEFAULT;
ALTER TABLE rollups_1h_default ALTER COLUMN data SET STORAGE MAIN;

-- Where rollups begin: hours sealed before this version have blocks but no rollups, so
-- queries read them raw. `rolled_up_from` is the first hour (and, rounded up to a day,
-- the first day) that has rollups; hours from there to `done_until` have them.
ALTER TABLE compression_progress ADD COLUMN rolled_up_from timestamptz;
UPDATE compression_progress SET rolled_up_from = done_until;

-- netpulse schema, version 7: compressed blocks of old numeric samples.
--
-- The maintenance task packs each whole hour of numeric samples older than the
-- compression age (2 h by default) into one block per series (store/src/block.rs:
-- delta-of-delta timestamps, integer or XOR-coded values), then removes those rows from
-- `samples`. Queries read both. Text values, deletes and NaN stay raw; so do samples
-- that arrive for an hour after it was compressed.

CREATE TABLE sample_blocks (
    series_id bigint      NOT NULL,
    first_ts  timestamptz NOT NULL,
    last_ts   timestamptz NOT NULL,
    data      bytea       NOT NULL,
    PRIMARY KEY (series_id, first_ts)
);
-- Blocks are compressed already: keep them in the row (a page holds several hour blocks of
-- 10 s samples) rather than have TOAST try to compress them again and move them out.
ALTER TABLE sample_blocks ALTER COLUMN data SET STORAGE MAIN;

-- How far compression has gone: every hour before `done_until` was compressed.
CREATE TABLE compression_progress (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    done_until timestamptz NOT NULL
);

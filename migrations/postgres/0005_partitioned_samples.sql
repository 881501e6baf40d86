-- netpulse schema, version 5: samples partitioned by day.
--
-- Daily partitions (`samples_pYYYYMMDD`, UTC) are created ahead of the data by the
-- maintenance task (store/src/maintenance.rs), which also drops whole partitions once
-- they are older than the raw retention. Rows outside the prepared days land in the
-- default partition; maintenance moves a day's rows out of it before creating that day's
-- partition. Existing rows start in the default partition.

ALTER TABLE samples RENAME TO samples_before_partitioning;
ALTER TABLE samples_before_partitioning
    RENAME CONSTRAINT samples_pkey TO samples_before_partitioning_pkey;

CREATE TABLE samples (
    series_id  bigint           NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    ts         timestamptz      NOT NULL,
    value      double precision,
    value_text text,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE samples_default PARTITION OF samples DEFAULT;

INSERT INTO samples (series_id, ts, value, value_text)
    SELECT series_id, ts, value, value_text FROM samples_before_partitioning;

DROP TABLE samples_before_partitioning;

-- no-transaction
-- netpulse schema, version 2: the value kinds of every gNMI TypedValue.
--
-- Decimals keep a float in `value` (so they chart) and their exact text in `value_text`;
-- bytes are base64, leaf-lists JSON, `Any` JSON with base64 in `value_text`. A delete is a
-- sample with both `value` and `value_text` NULL. See store/src/codec.rs.
--
-- SQLite cannot alter a CHECK constraint, so `series` is rebuilt. Foreign keys must be off
-- while its old copy is dropped (else dropping it would delete every sample through
-- ON DELETE CASCADE), and that pragma has no effect inside a transaction: hence
-- `no-transaction` above and the explicit transaction here.

PRAGMA foreign_keys = OFF;

BEGIN;

CREATE TABLE series_v2 (
    id              INTEGER PRIMARY KEY,
    device_id       INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- Canonical path string (model::Path Display form).
    path            TEXT    NOT NULL,
    -- Kind of the first value seen; reading reconstructs values with it.
    kind            TEXT    NOT NULL CHECK (kind IN ('int', 'uint', 'float', 'bool', 'string',
                                                     'decimal', 'bytes', 'leaflist', 'any')),
    -- Newest sample, maintained on write.
    last_ts         INTEGER,
    last_value      REAL,
    last_value_text TEXT,
    UNIQUE (device_id, path)
) STRICT;

INSERT INTO series_v2 (id, device_id, path, kind, last_ts, last_value, last_value_text)
    SELECT id, device_id, path, kind, last_ts, last_value, last_value_text FROM series;

DROP TABLE series;

ALTER TABLE series_v2 RENAME TO series;

COMMIT;

PRAGMA foreign_keys = ON;

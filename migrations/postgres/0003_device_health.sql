-- netpulse schema, version 3: the collector's health report of each device.
--
-- `health` is the JSON the collector keeps per device (state, lastError, encoding, quirks,
-- reconnects, bytesReceived, per-subscription expected/received/missing/gaps; see
-- collector/src/health.rs), written every few seconds for devices whose health changed,
-- so that web nodes in other processes can show it. `health_at` is when the collector
-- took the snapshot: an older snapshot never replaces a newer one.

ALTER TABLE devices
    ADD COLUMN health    jsonb,
    ADD COLUMN health_at timestamptz;

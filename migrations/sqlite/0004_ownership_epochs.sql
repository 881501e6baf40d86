-- netpulse schema, version 4: who may write a device's samples.
--
-- `epoch` grows each time the device is placed on another collector; `owner` names the
-- collector that claimed it last. Rows of a device whose epoch has grown past the one a
-- batch carries are refused (fencing).

ALTER TABLE devices ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE devices ADD COLUMN owner TEXT;

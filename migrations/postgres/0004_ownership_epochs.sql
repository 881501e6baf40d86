-- netpulse schema, version 4: who may write a device's samples.
--
-- `epoch` grows each time the device is placed on another collector (the operator hands
-- out epochs); `owner` names the collector that claimed it last. A batch carries the
-- epoch its collector was given; rows of a device whose epoch has since grown are refused
-- (fencing), so a collector that lost a device can never write for it again.

ALTER TABLE devices
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    ADD COLUMN owner text;

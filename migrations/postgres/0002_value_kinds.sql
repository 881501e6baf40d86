-- netpulse schema, version 2: the value kinds of every gNMI TypedValue.
--
-- Decimals keep a float in `value` (so they chart) and their exact text in `value_text`;
-- bytes are base64, leaf-lists JSON, `Any` JSON with base64 in `value_text`. A delete is a
-- sample with both `value` and `value_text` NULL. See store/src/codec.rs.

ALTER TABLE series DROP CONSTRAINT series_kind_check;
ALTER TABLE series ADD CONSTRAINT series_kind_check
    CHECK (kind IN ('int', 'uint', 'float', 'bool', 'string', 'decimal', 'bytes', 'leaflist', 'any'));

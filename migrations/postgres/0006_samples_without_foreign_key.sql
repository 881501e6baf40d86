-- netpulse schema, version 6: samples lose their foreign key to series.
--
-- The key checked every inserted sample against `series` and cost as much as the
-- insert itself (about half of the time of a batch, measured with INSERT ... SELECT of
-- 560,000 rows on PostgreSQL 15; docs/PERFORMANCE.md). netpulse never deletes a series
-- or a device; samples leave by whole partitions (retention). Queries reach samples
-- through `series`, so a sample whose series was deleted by hand is unreachable, not
-- wrong. The name of the constraint is looked up rather than assumed.

DO $$
DECLARE
    name text;
BEGIN
    FOR name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'samples'::regclass AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE samples DROP CONSTRAINT %I', name);
    END LOOP;
END
$$;

-- Every batch updates the last value of each series it writes (5,000 rows for a batch of
-- 5,000 newest samples). Half-empty pages let those updates stay on their page (HOT
-- updates: no index entries rewritten, no bloat left for vacuum to chase). Applies to
-- pages written from now on.
ALTER TABLE series SET (fillfactor = 50);

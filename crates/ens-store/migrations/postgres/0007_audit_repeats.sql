-- Refusals of unauthenticated requests are recorded as one row per source, outcome and
-- period with a count, instead of a row each.
ALTER TABLE audit_log ADD COLUMN repeats BIGINT NOT NULL DEFAULT 1;

-- Dense positions for every listing, not only the public one. An account's listing (its
-- own images and those shared with it) can hold 100 000 images; skipping through it made a
-- deep page cost grow with the account. Every listing is now numbered 0..n-1 per
-- (scope, node) in image order, kept dense by each write (appending is a seek; removing,
-- or sharing an older image, renumbers the rows after it), so any page is one index seek.
-- The index is no longer unique: renumbering moves rows past each other one at a time.

DROP INDEX image_listing_by_position;

UPDATE image_listing SET position = numbered.position
FROM (
    SELECT scope, node_id, image_seq,
           row_number() OVER (PARTITION BY scope, node_id ORDER BY image_seq) - 1 AS position
    FROM image_listing WHERE scope <> 'system'
) AS numbered
WHERE image_listing.scope = numbered.scope
  AND image_listing.node_id = numbered.node_id
  AND image_listing.image_seq = numbered.image_seq;

CREATE INDEX image_listing_by_position ON image_listing (scope, node_id, position);

-- Dense positions for the public listing. The public catalog is only ever replaced whole,
-- so its listing rows can be numbered 0..n-1 per node when it is loaded, and a page is then
-- found by position: a deep page costs the same as the first, whatever the catalog's size.
-- Rows of accounts' listings keep a NULL position (their pages are bounded by the account's
-- own images, not by the catalog).

ALTER TABLE image_listing ADD COLUMN position INTEGER;

UPDATE image_listing SET position = numbered.position
FROM (
    SELECT node_id, image_seq, row_number() OVER (PARTITION BY node_id ORDER BY image_seq) - 1 AS position
    FROM image_listing WHERE scope = 'system'
) AS numbered
WHERE image_listing.scope = 'system'
  AND image_listing.node_id = numbered.node_id
  AND image_listing.image_seq = numbered.image_seq;

CREATE UNIQUE INDEX image_listing_by_position ON image_listing (scope, node_id, position)
    WHERE position IS NOT NULL;

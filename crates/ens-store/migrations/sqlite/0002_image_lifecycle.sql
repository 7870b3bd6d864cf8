-- Custom image life cycle, the instance and snapshot registry, and key listing.
--
-- `image_listing` only ever holds Available images: an image joins its owner's listing when
-- its build completes, and a share's listing when shared (only Available images can be).

ALTER TABLE images ADD COLUMN status TEXT NOT NULL DEFAULT 'Available';
ALTER TABLE images ADD COLUMN instance_id TEXT;
ALTER TABLE images ADD COLUMN compute_type TEXT NOT NULL DEFAULT 'ens_vm';
ALTER TABLE images ADD COLUMN os_version TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- When the current build step ends (unix milliseconds); NULL once the build is over.
ALTER TABLE images ADD COLUMN build_due_at INTEGER;
ALTER TABLE images ADD COLUMN build_failure TEXT;
-- Instance to release once the image is uploaded (CreateImage DeleteAfterImageUpload).
ALTER TABLE images ADD COLUMN release_instance TEXT;
CREATE INDEX images_by_build_due ON images (build_due_at) WHERE build_due_at IS NOT NULL;

CREATE TABLE instances (
    id              TEXT PRIMARY KEY NOT NULL,
    owner_id        TEXT NOT NULL REFERENCES accounts (id),
    node_id         TEXT NOT NULL REFERENCES nodes (id),
    image_id        TEXT,
    platform        TEXT NOT NULL,
    os_type         TEXT NOT NULL,
    os_version      TEXT NOT NULL,
    architecture    TEXT NOT NULL,
    compute_type    TEXT NOT NULL,
    system_disk_gib INTEGER NOT NULL,
    data_disks_gib  TEXT NOT NULL,
    build_failure   TEXT
);
CREATE INDEX instances_by_image ON instances (image_id);

CREATE TABLE snapshots (
    id              TEXT PRIMARY KEY NOT NULL,
    owner_id        TEXT NOT NULL REFERENCES accounts (id),
    node_id         TEXT NOT NULL REFERENCES nodes (id),
    instance_id     TEXT,
    platform        TEXT NOT NULL,
    os_type         TEXT NOT NULL,
    os_version      TEXT NOT NULL,
    architecture    TEXT NOT NULL,
    size_gib        INTEGER NOT NULL,
    build_failure   TEXT
);

CREATE INDEX access_keys_by_account ON access_keys (account_id);

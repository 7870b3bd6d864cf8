-- Custom image life cycle, the instance and snapshot registry, and key listing
-- (PostgreSQL edition of migrations/sqlite/0002_image_lifecycle.sql).
--
-- `image_listing` only ever holds Available images: an image joins its owner's listing when
-- its build completes, and a share's listing when shared (only Available images can be).

ALTER TABLE images ADD COLUMN status TEXT COLLATE "C" NOT NULL DEFAULT 'Available';
ALTER TABLE images ADD COLUMN instance_id TEXT COLLATE "C";
ALTER TABLE images ADD COLUMN compute_type TEXT COLLATE "C" NOT NULL DEFAULT 'ens_vm';
ALTER TABLE images ADD COLUMN os_version TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN description TEXT COLLATE "C" NOT NULL DEFAULT '';
-- When the current build step ends (unix milliseconds); NULL once the build is over.
ALTER TABLE images ADD COLUMN build_due_at BIGINT;
ALTER TABLE images ADD COLUMN build_failure TEXT COLLATE "C";
-- Instance to release once the image is uploaded (CreateImage DeleteAfterImageUpload).
ALTER TABLE images ADD COLUMN release_instance TEXT COLLATE "C";
CREATE INDEX images_by_build_due ON images (build_due_at) WHERE build_due_at IS NOT NULL;

CREATE TABLE instances (
    id              TEXT COLLATE "C" PRIMARY KEY,
    owner_id        TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    node_id         TEXT COLLATE "C" NOT NULL REFERENCES nodes (id),
    image_id        TEXT COLLATE "C",
    platform        TEXT COLLATE "C" NOT NULL,
    os_type         TEXT COLLATE "C" NOT NULL,
    os_version      TEXT COLLATE "C" NOT NULL,
    architecture    TEXT COLLATE "C" NOT NULL,
    compute_type    TEXT COLLATE "C" NOT NULL,
    system_disk_gib BIGINT NOT NULL,
    data_disks_gib  TEXT COLLATE "C" NOT NULL,
    build_failure   TEXT COLLATE "C",
    -- Registration order (SQLite's rowid): DeleteImage names the first-registered instance
    -- that runs the image, as the SQLite store does.
    seq             BIGSERIAL NOT NULL
);
CREATE INDEX instances_by_image ON instances (image_id, seq);

CREATE TABLE snapshots (
    id              TEXT COLLATE "C" PRIMARY KEY,
    owner_id        TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    node_id         TEXT COLLATE "C" NOT NULL REFERENCES nodes (id),
    instance_id     TEXT COLLATE "C",
    platform        TEXT COLLATE "C" NOT NULL,
    os_type         TEXT COLLATE "C" NOT NULL,
    os_version      TEXT COLLATE "C" NOT NULL,
    architecture    TEXT COLLATE "C" NOT NULL,
    size_gib        BIGINT NOT NULL,
    build_failure   TEXT COLLATE "C"
);

CREATE INDEX access_keys_by_account ON access_keys (account_id);

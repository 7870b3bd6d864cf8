-- Image bytes and the transfers that move them in and out of object storage.
--
-- These tables name images by ID, without a foreign key: a file outlives its image row
-- until the bytes are gone, and an export that is still reading a deleted image's file
-- keeps it referenced until it ends.

-- The files an image is made of, one per disk (0 is the system disk), as stored in the
-- service's own image storage. Images made by CreateImage have none: their sparse files
-- are made when exported.
CREATE TABLE image_files (
    image_id    TEXT NOT NULL,
    disk        INTEGER NOT NULL,
    object_key  TEXT NOT NULL,
    byte_size   INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (image_id, disk)
);

-- Images whose files are to be removed (deleted images); the removal waits while a
-- transfer of the image runs.
CREATE TABLE image_file_removals (
    image_id    TEXT PRIMARY KEY NOT NULL,
    queued_at   INTEGER NOT NULL
);

-- One import per image and the latest export of each image. A running transfer is
-- claimed by one server for a lease (unix ms); a server killed mid-way lets its lease
-- lapse and any replica takes the transfer over from the start.
CREATE TABLE image_transfers (
    image_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    -- The RequestId of the call that asked for it: the audit records its end under it too.
    request_id   TEXT NOT NULL,
    state        TEXT NOT NULL,
    url          TEXT,
    reason       TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (image_id, kind)
);
CREATE INDEX image_transfers_running ON image_transfers (state, lease_until);
CREATE INDEX image_transfers_by_account ON image_transfers (account_id, kind);

-- The objects a transfer reads (an import: one per disk) or writes (an export: one).
CREATE TABLE image_transfer_objects (
    image_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    disk        INTEGER NOT NULL,
    region      TEXT NOT NULL,
    bucket      TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    PRIMARY KEY (image_id, kind, disk)
);

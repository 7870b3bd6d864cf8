-- Accounts, their AccessKeys, ENS nodes, images and shares.
--
-- Listing design: DescribeImages must cost the same whatever the size of the catalog.
-- `image_listing` holds one row per (scope, node, image) where scope is 'system' for public
-- images or an account ID for the images it owns or that are shared with it, and node '' is
-- the listing over all nodes. Each scope's rows are read in `seq` order straight off the
-- primary key, and `listing_counts` keeps the size of every listing, updated in the same
-- transaction as the rows, so TotalCount is one lookup instead of a count.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE nodes (
    id          TEXT PRIMARY KEY NOT NULL
);

CREATE TABLE images (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    owner_id        TEXT REFERENCES accounts (id),
    architecture    TEXT NOT NULL,
    platform        TEXT NOT NULL,
    os_type         TEXT NOT NULL,
    size_gib        INTEGER NOT NULL,
    creation_time   TEXT NOT NULL,
    snapshot_id     TEXT
);
CREATE INDEX images_by_name ON images (name, seq);
CREATE INDEX images_by_snapshot ON images (snapshot_id, seq);
CREATE INDEX images_by_owner ON images (owner_id, seq);

CREATE TABLE image_nodes (
    image_seq   INTEGER NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    node_id     TEXT NOT NULL REFERENCES nodes (id),
    PRIMARY KEY (image_seq, node_id)
) WITHOUT ROWID;

CREATE TABLE image_disks (
    image_seq   INTEGER NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    disk_type   TEXT NOT NULL,
    size_gib    INTEGER NOT NULL,
    format      TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    PRIMARY KEY (image_seq, position)
) WITHOUT ROWID;

CREATE TABLE image_shares (
    image_seq   INTEGER NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (image_seq, account_id)
) WITHOUT ROWID;
CREATE INDEX image_shares_by_account ON image_shares (account_id, image_seq);

CREATE TABLE image_listing (
    scope       TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    image_seq   INTEGER NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    PRIMARY KEY (scope, node_id, image_seq)
) WITHOUT ROWID;
CREATE INDEX image_listing_by_image ON image_listing (image_seq);

CREATE TABLE listing_counts (
    scope       TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (scope, node_id)
) WITHOUT ROWID;

CREATE TABLE signature_nonces (
    access_key_id   TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
) WITHOUT ROWID;
CREATE INDEX signature_nonces_by_expiry ON signature_nonces (expires_at);

CREATE TABLE store_metadata (
    name    TEXT PRIMARY KEY NOT NULL,
    value   TEXT NOT NULL
);

-- Accounts, their AccessKeys, ENS nodes, images and shares (PostgreSQL edition of
-- migrations/sqlite/0001_initial.sql: same tables, same columns, same meaning).
--
-- Listing design: DescribeImages must cost the same whatever the size of the catalog.
-- `image_listing` holds one row per (scope, node, image) where scope is 'system' for public
-- images or an account ID for the images it owns or that are shared with it, and node '' is
-- the listing over all nodes. Each scope's rows are read in `seq` order straight off the
-- primary key, and `listing_counts` keeps the size of every listing, updated in the same
-- transaction as the rows, so TotalCount is one lookup instead of a count.
--
-- Every text column uses the "C" collation: it compares and sorts by bytes, as SQLite's
-- BINARY collation does, and lower() on it folds ASCII only, as SQLite's lower() does, so
-- both backends order and match identically whatever the database's locale.
-- Integers are BIGINT throughout (SQLite integers are 64-bit).

CREATE TABLE accounts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE access_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    secret      TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE nodes (
    id          TEXT COLLATE "C" PRIMARY KEY
);

CREATE TABLE images (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT COLLATE "C" NOT NULL UNIQUE,
    name            TEXT COLLATE "C" NOT NULL,
    owner_id        TEXT COLLATE "C" REFERENCES accounts (id),
    architecture    TEXT COLLATE "C" NOT NULL,
    platform        TEXT COLLATE "C" NOT NULL,
    os_type         TEXT COLLATE "C" NOT NULL,
    size_gib        BIGINT NOT NULL,
    creation_time   TEXT COLLATE "C" NOT NULL,
    snapshot_id     TEXT COLLATE "C"
);
CREATE INDEX images_by_name ON images (name, seq);
CREATE INDEX images_by_snapshot ON images (snapshot_id, seq);
CREATE INDEX images_by_owner ON images (owner_id, seq);

CREATE TABLE image_nodes (
    image_seq   BIGINT NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    node_id     TEXT COLLATE "C" NOT NULL REFERENCES nodes (id),
    PRIMARY KEY (image_seq, node_id)
);

CREATE TABLE image_disks (
    image_seq   BIGINT NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    disk_type   TEXT COLLATE "C" NOT NULL,
    size_gib    BIGINT NOT NULL,
    format      TEXT COLLATE "C" NOT NULL,
    file_id     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (image_seq, position)
);

CREATE TABLE image_shares (
    image_seq   BIGINT NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (image_seq, account_id)
);
CREATE INDEX image_shares_by_account ON image_shares (account_id, image_seq);

CREATE TABLE image_listing (
    scope       TEXT COLLATE "C" NOT NULL,
    node_id     TEXT COLLATE "C" NOT NULL,
    image_seq   BIGINT NOT NULL REFERENCES images (seq) ON DELETE CASCADE,
    PRIMARY KEY (scope, node_id, image_seq)
);
CREATE INDEX image_listing_by_image ON image_listing (image_seq);

CREATE TABLE listing_counts (
    scope       TEXT COLLATE "C" NOT NULL,
    node_id     TEXT COLLATE "C" NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (scope, node_id)
);

CREATE TABLE signature_nonces (
    access_key_id   TEXT COLLATE "C" NOT NULL,
    nonce           TEXT COLLATE "C" NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
);
CREATE INDEX signature_nonces_by_expiry ON signature_nonces (expires_at);

CREATE TABLE store_metadata (
    name    TEXT COLLATE "C" PRIMARY KEY,
    value   TEXT COLLATE "C" NOT NULL
);

-- PostgreSQL only: the server replicas sharing this database, each announcing itself
-- periodically (`last_seen`, unix milliseconds), so per-replica limits can be divided by the
-- number alive. SQLite is served by one process and has no such table.
CREATE TABLE replica_heartbeats (
    replica     TEXT COLLATE "C" PRIMARY KEY,
    last_seen   BIGINT NOT NULL
);

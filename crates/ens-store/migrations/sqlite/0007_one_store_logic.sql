-- One store logic over both engines: the tables both engines' rules read must have the same
-- columns.
--
-- Instances get an explicit registration order (`seq`), as on PostgreSQL, so DeleteImage
-- names the first-registered instance that runs an image on both engines (it relied on
-- SQLite's implicit rowid before, unordered). The table is rebuilt to make `seq` its key.
CREATE TABLE instances_by_seq (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    owner_id TEXT NOT NULL REFERENCES accounts (id), node_id TEXT NOT NULL REFERENCES nodes (id),
    image_id TEXT, platform TEXT NOT NULL, os_type TEXT NOT NULL, os_version TEXT NOT NULL,
    architecture TEXT NOT NULL, compute_type TEXT NOT NULL,
    system_disk_gib INTEGER NOT NULL, data_disks_gib TEXT NOT NULL, build_failure TEXT
);
INSERT INTO instances_by_seq (seq, id, owner_id, node_id, image_id, platform, os_type, os_version, architecture,
                              compute_type, system_disk_gib, data_disks_gib, build_failure)
SELECT rowid, id, owner_id, node_id, image_id, platform, os_type, os_version, architecture,
       compute_type, system_disk_gib, data_disks_gib, build_failure
FROM instances ORDER BY rowid;
DROP TABLE instances;
ALTER TABLE instances_by_seq RENAME TO instances;
CREATE INDEX instances_by_image ON instances (image_id, seq);

-- Server replicas announce themselves here (`last_seen`, unix milliseconds). One process
-- serves an SQLite store, so it only ever counts itself; the rule is the same as PostgreSQL's.
CREATE TABLE replica_heartbeats (
    replica     TEXT PRIMARY KEY NOT NULL,
    last_seen   INTEGER NOT NULL
);

-- Build steps advance in due order, then image order, on both engines.
DROP INDEX images_by_build_due;
CREATE INDEX images_by_build_due ON images (build_due_at, seq) WHERE build_due_at IS NOT NULL;

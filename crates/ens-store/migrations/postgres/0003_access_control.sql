-- RAM users, AccessKeys of users, policies and their attachments, and the audit log
-- (PostgreSQL edition of migrations/sqlite/0003_access_control.sql).
--
-- access_keys.secret now holds the secret sealed with the operator's master key
-- ("sealed:v1:..."); the server seals any older plain value at start.

ALTER TABLE access_keys ADD COLUMN user_name TEXT COLLATE "C";

CREATE TABLE ram_users (
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    name        TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE policies (
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    name        TEXT COLLATE "C" NOT NULL,
    document    TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE policy_attachments (
    account_id  TEXT COLLATE "C" NOT NULL,
    user_name   TEXT COLLATE "C" NOT NULL,
    policy_name TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, user_name, policy_name),
    FOREIGN KEY (account_id, user_name) REFERENCES ram_users (account_id, name) ON DELETE CASCADE,
    FOREIGN KEY (account_id, policy_name) REFERENCES policies (account_id, name)
);

CREATE TABLE audit_log (
    seq             BIGSERIAL PRIMARY KEY,
    at              TEXT COLLATE "C" NOT NULL,
    request_id      TEXT COLLATE "C" NOT NULL,
    account_id      TEXT COLLATE "C",
    user_name       TEXT COLLATE "C",
    access_key_id   TEXT COLLATE "C",
    action          TEXT COLLATE "C" NOT NULL,
    resource        TEXT COLLATE "C" NOT NULL,
    source_ip       TEXT COLLATE "C" NOT NULL,
    outcome         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at);

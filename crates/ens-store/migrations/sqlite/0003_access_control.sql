-- RAM users, AccessKeys of users, policies and their attachments, and the audit log.
--
-- access_keys.secret now holds the secret sealed with the operator's master key
-- ("sealed:v1:..."); the server seals any older plain value at start.

ALTER TABLE access_keys ADD COLUMN user_name TEXT;

CREATE TABLE ram_users (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    name        TEXT NOT NULL,
    user_id     TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE policies (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    name        TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE policy_attachments (
    account_id  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    PRIMARY KEY (account_id, user_name, policy_name),
    FOREIGN KEY (account_id, user_name) REFERENCES ram_users (account_id, name) ON DELETE CASCADE,
    FOREIGN KEY (account_id, policy_name) REFERENCES policies (account_id, name)
);

CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    account_id      TEXT,
    user_name       TEXT,
    access_key_id   TEXT,
    action          TEXT NOT NULL,
    resource        TEXT NOT NULL,
    source_ip       TEXT NOT NULL,
    outcome         TEXT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at);

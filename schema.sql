-- The Slices database, as numbered migrations. Each section starting with a line
-- `-- version: N` is applied once, in order, inside one transaction; the number of the
-- last one applied is kept in PRAGMA user_version. Never edit an applied section: add a
-- new one. Times are Unix seconds (UTC).

-- version: 1
CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name        TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('student', 'staff', 'admin')),
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL,
    last_login_at       INTEGER,
    disabled_at         INTEGER,
    disabled_reason     TEXT
);

-- Server-side sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ip           TEXT NOT NULL DEFAULT '',
    user_agent   TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions(user_id);

-- Security events. Log-in throttling counts `login_failed` rows here.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    event    TEXT NOT NULL,
    actor_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    subject  TEXT NOT NULL DEFAULT '',
    ip       TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit(at);
CREATE INDEX audit_by_subject ON audit(event, subject, at);
CREATE INDEX audit_by_ip ON audit(event, ip, at);

-- One-time links that let someone create an account with a given role (the first admin).
CREATE TABLE invites (
    token_hash BLOB PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('student', 'staff', 'admin')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    note       TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- version: 2
-- Slave hosts. Each runs slices-agent; the master reaches it at `address` over mutual TLS
-- and expects `name` in its certificate.
CREATE TABLE nodes (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    address      TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    draining     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER,
    last_error   TEXT,
    info         TEXT            -- the last node_info reply, JSON
);

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

-- version: 3
-- Resource plans (a slice's limits). The quota issue adds per-user and per-course rules.
CREATE TABLE plans (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    memory_mb       INTEGER NOT NULL,
    memory_limit_mb INTEGER NOT NULL,
    processes       INTEGER NOT NULL,
    disk_mb         INTEGER NOT NULL,
    cpu_shares      INTEGER NOT NULL,
    is_default      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO plans (name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares, is_default)
VALUES ('standard', 256, 512, 240, 0, 1024, 1);

-- OS templates the master offers (the files are in the master's os-templates folder).
CREATE TABLE templates (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

-- A student's slice, from request to destruction.
CREATE TABLE slices (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    state        TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'queued', 'provisioning',
                     'running', 'stopped', 'failed', 'denied', 'destroying', 'destroyed')),
    step         TEXT NOT NULL DEFAULT '',
    failure      TEXT NOT NULL DEFAULT '',
    template     TEXT NOT NULL,
    plan_id      INTEGER NOT NULL REFERENCES plans(id),
    course       TEXT NOT NULL DEFAULT '',
    purpose      TEXT NOT NULL DEFAULT '',
    node_id      INTEGER REFERENCES nodes(id),
    wanted_node  INTEGER REFERENCES nodes(id),
    veid         INTEGER,
    ip           TEXT,
    hostname     TEXT NOT NULL,
    subdomain    TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   INTEGER REFERENCES users(id),
    updated_at   INTEGER NOT NULL
);
CREATE INDEX slices_by_user ON slices(user_id);
CREATE INDEX slices_by_node ON slices(node_id, state);
CREATE INDEX slices_by_state ON slices(state, requested_at);
-- Never two live slices on one address or one container id of a node.
CREATE UNIQUE INDEX slices_ip ON slices(node_id, ip) WHERE ip IS NOT NULL;
CREATE UNIQUE INDEX slices_veid ON slices(node_id, veid) WHERE veid IS NOT NULL;

-- What happened to a slice, for its owner and staff.
CREATE TABLE slice_events (
    id       INTEGER PRIMARY KEY,
    slice_id INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX slice_events_by_slice ON slice_events(slice_id, id);

-- Durable background work. A job is claimed with a lease; an expired lease is taken again.
-- `checkpoint` records the steps with an effect that are done, so a retry skips them.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 8,
    run_after    INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT NOT NULL DEFAULT '',
    checkpoint   TEXT NOT NULL DEFAULT '{}',
    slice_id     INTEGER REFERENCES slices(id),
    node_id      INTEGER REFERENCES nodes(id),
    user_id      INTEGER REFERENCES users(id),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_ready ON jobs(state, run_after);
CREATE INDEX jobs_leases ON jobs(state, lease_until);
CREATE INDEX jobs_by_slice ON jobs(slice_id);

-- Every command sent to an agent, with its answer.
CREATE TABLE agent_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    node_id     INTEGER REFERENCES nodes(id),
    job_id      INTEGER REFERENCES jobs(id),
    slice_id    INTEGER REFERENCES slices(id),
    command     TEXT NOT NULL,
    arguments   TEXT NOT NULL,
    code        INTEGER,
    returned    TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_log_by_slice ON agent_log(slice_id, id);
CREATE INDEX agent_log_by_job ON agent_log(job_id, id);

-- version: 4
-- Mail. A message is written here in the same transaction as the event that causes it, and
-- sent by the master's loop with retries; it is rendered from its kind and data when sent
-- (and when staff read it), so the outbox never holds half a message.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    to_addr     TEXT NOT NULL,
    to_name     TEXT NOT NULL DEFAULT '',
    data        TEXT NOT NULL DEFAULT '{}',
    state       TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    INTEGER NOT NULL,
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    user_id     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    slice_id    INTEGER REFERENCES slices(id) ON DELETE SET NULL
);
CREATE INDEX outbox_due ON outbox(state, next_try);

ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

-- Single-use links sent by mail: verify an address, reset a password.
CREATE TABLE email_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;

-- version: 5
-- How staff hear of new requests: a mail each, a daily digest, or none.
ALTER TABLE users ADD COLUMN request_mail TEXT NOT NULL DEFAULT 'each'
    CHECK (request_mail IN ('each', 'daily', 'none'));
-- The digests sent, one per staff member and day, so a restart never sends one twice.
CREATE TABLE digests (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day     TEXT NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;

-- version: 6
-- Students' own SSH public keys: they go into the gateway account's authorized_keys.
CREATE TABLE ssh_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, fingerprint)
);
-- The public half of the user's hop key (gateway -> slice); the private half is only on the
-- gateway, in the user's home there.
ALTER TABLE users ADD COLUMN hop_key TEXT;
-- Each reconcile of the gateway, for staff: what changed, or why it failed.
CREATE TABLE gateway_runs (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    scope       TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    changes     INTEGER NOT NULL,
    summary     TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL
);

-- version: 7
-- What each running slice uses, sampled from its node (beancounter shape: held, maxheld,
-- barrier, limit, failcnt), kept for a bounded time.
CREATE TABLE usage_samples (
    slice_id INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    at       INTEGER NOT NULL,
    held     INTEGER NOT NULL,
    maxheld  INTEGER NOT NULL,
    barrier  INTEGER NOT NULL,
    lim      INTEGER NOT NULL,
    failcnt  INTEGER NOT NULL,
    PRIMARY KEY (slice_id, resource, at)
) WITHOUT ROWID;
CREATE INDEX usage_by_time ON usage_samples(at);
-- The newest sample of each slice and resource (what the dashboard shows first).
CREATE TABLE usage_latest (
    slice_id INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    at       INTEGER NOT NULL,
    held     INTEGER NOT NULL,
    lim      INTEGER NOT NULL,
    failcnt  INTEGER NOT NULL,
    PRIMARY KEY (slice_id, resource)
) WITHOUT ROWID;
-- One warning a day per slice and resource whose limit was hit, so nobody is flooded.
CREATE TABLE limit_alerts (
    slice_id INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    day      TEXT NOT NULL,
    hits     INTEGER NOT NULL,
    PRIMARY KEY (slice_id, resource, day)
) WITHOUT ROWID;

-- version: 8
-- How many live slices a student may have and which plans: a default rule, rules per course
-- (the course given on the request) and per user; the most specific one applies.
CREATE TABLE quotas (
    id         INTEGER PRIMARY KEY,
    scope      TEXT NOT NULL CHECK (scope IN ('default', 'course', 'user')),
    course     TEXT NOT NULL DEFAULT '',
    user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,
    max_slices INTEGER NOT NULL CHECK (max_slices >= 0),
    plans      TEXT NOT NULL DEFAULT '',   -- plan ids, comma-separated; empty: every plan
    UNIQUE (scope, course, user_id)
);
CREATE UNIQUE INDEX quotas_one_default ON quotas(scope) WHERE scope = 'default';
INSERT INTO quotas (scope, max_slices) VALUES ('default', 2);

-- version: 9
-- Values staff set in the web interface that the configuration file leaves unset (the
-- configuration always wins). Today: the gateway's host key, accepted once by staff.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    set_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    set_at INTEGER NOT NULL
) WITHOUT ROWID;

-- version: 10
-- What keeps a user's gateway login from being made (an account of that name exists on the
-- gateway and is not one Slices made): shown to staff on the user's page; the others are
-- applied regardless.
ALTER TABLE users ADD COLUMN gateway_problem TEXT;

-- version: 11
-- The master owns each node's slice subnet: given at enrolment, or the next free one of the
-- pool (`node_subnet_pool`); no two nodes share addresses.
ALTER TABLE nodes ADD COLUMN subnet TEXT;
CREATE UNIQUE INDEX nodes_subnet ON nodes(subnet) WHERE subnet IS NOT NULL;

-- version: 12
-- The SHA-256 of the certificate each node was issued at enrolment (or first seen with):
-- the master talks only to an agent presenting that one, so the key of a node removed or
-- enrolled again is worth nothing.
ALTER TABLE nodes ADD COLUMN cert_sha256 TEXT;

-- version: 13
-- Whether a plan's students are root in their slices (passwordless sudo): on by default, as
-- the seed's OpenVZ containers gave each student root.
ALTER TABLE plans ADD COLUMN student_root INTEGER NOT NULL DEFAULT 1;

-- version: 14
-- Containers a node holds that no slice does (orphans), as the last reconcile found them:
-- shown to staff on the Nodes page and removed by a staff action (`remove_asked_by`). Their
-- ids and addresses are not given to new slices while they are listed.
CREATE TABLE orphans (
    node_id         INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    veid            INTEGER NOT NULL,
    state           TEXT NOT NULL,
    ip              TEXT NOT NULL DEFAULT '',
    hostname        TEXT NOT NULL DEFAULT '',
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    remove_asked_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    remove_asked_at INTEGER,
    PRIMARY KEY (node_id, veid)
) WITHOUT ROWID;

-- version: 15
-- One row the health check writes while the store is failing (a full disk): when it can be
-- written again, the store is healthy again.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);

-- version: 16
-- The built-in web gateway looks a slice up by its name on every request.
CREATE INDEX slices_by_subdomain ON slices(subdomain);

-- version: 17
-- Every slice that is not gone has a name of its own: its web name (NAME.<domain>) and its
-- login name at the built-in gateway. A student's second slice used to share the first's;
-- it becomes NAME-ID. The SSH host key a slice first showed the built-in gateway is kept
-- (trust on first use, per slice; cleared when the slice is made anew).
UPDATE slices SET subdomain = subdomain || '-' || id
 WHERE state NOT IN ('denied', 'destroyed')
   AND EXISTS (SELECT 1 FROM slices o
                WHERE o.subdomain = slices.subdomain AND o.id < slices.id
                  AND o.state NOT IN ('denied', 'destroyed'));
DROP INDEX slices_by_subdomain;
CREATE UNIQUE INDEX slices_name ON slices(subdomain) WHERE state NOT IN ('denied', 'destroyed');
CREATE INDEX slices_by_subdomain ON slices(subdomain);
ALTER TABLE slices ADD COLUMN host_key TEXT;

-- version: 18
-- The audit log says what each event is about (an account, a slice, a node, a container, a
-- template, the gateway), so the page can link it and filter by it. A slice is named by its
-- id; an account by its username (key events named the account by its id).
ALTER TABLE audit ADD COLUMN subject_kind TEXT NOT NULL DEFAULT '';
UPDATE audit SET subject_kind = 'slice',
       detail = CASE WHEN instr(subject, '(') > 0
                     THEN trim(substr(subject, instr(subject, '(') + 1), ')') || ': ' || detail
                     ELSE detail END,
       subject = CAST(CAST(substr(subject, 7) AS INTEGER) AS TEXT)
 WHERE subject LIKE 'slice %';
UPDATE audit SET subject_kind = 'slice',
       subject = (SELECT CAST(s.id AS TEXT) FROM slices s WHERE s.hostname = audit.subject
                   ORDER BY s.id DESC LIMIT 1)
 WHERE event = 'limit_hit' AND EXISTS (SELECT 1 FROM slices s WHERE s.hostname = audit.subject);
UPDATE audit SET subject_kind = 'container', subject = substr(subject, 11)
 WHERE subject LIKE 'container %';
UPDATE audit SET subject_kind = 'gateway', subject = '', event = 'gateway_changed'
 WHERE event = 'node_changed' AND subject = 'gateway';
UPDATE audit SET subject_kind = 'template', event = 'template_changed'
 WHERE event = 'node_changed' AND detail = 'template offered';
UPDATE audit SET subject_kind = 'node'
 WHERE event IN ('node_unreachable', 'node_reachable', 'node_changed');
UPDATE audit SET subject = coalesce((SELECT username FROM users WHERE id = CAST(audit.subject AS INTEGER)), subject)
 WHERE event IN ('key_added', 'key_removed');
UPDATE audit SET subject_kind = 'account' WHERE subject_kind = '' AND subject <> '';
CREATE INDEX audit_by_kind ON audit(subject_kind, subject, at);

-- version: 19
-- Lists count without scanning: the number of slices in each state, kept by triggers in the
-- same transaction as the change. And staff list a state's slices newest first by index.
CREATE TABLE slice_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO slice_counts SELECT state, count(*) FROM slices GROUP BY state;
CREATE TRIGGER slice_counts_insert AFTER INSERT ON slices BEGIN
  INSERT INTO slice_counts VALUES (NEW.state, 1) ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER slice_counts_delete AFTER DELETE ON slices BEGIN
  UPDATE slice_counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER slice_counts_state AFTER UPDATE OF state ON slices
  WHEN OLD.state IS NOT NEW.state BEGIN
  UPDATE slice_counts SET n = n - 1 WHERE state = OLD.state;
  INSERT INTO slice_counts VALUES (NEW.state, 1) ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE INDEX slices_newest_in_state ON slices(state);

-- version: 20
-- Staff search reads indexes, never every slice: users by any part of their username through
-- a trigram index (kept by triggers), slices by node and by the start of their address.
CREATE VIRTUAL TABLE users_search USING fts5(
    username, content = 'users', content_rowid = 'id', tokenize = 'trigram');
INSERT INTO users_search(users_search) VALUES ('rebuild');
CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN
  INSERT INTO users_search(rowid, username) VALUES (NEW.id, NEW.username);
END;
CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN
  INSERT INTO users_search(users_search, rowid, username) VALUES ('delete', OLD.id, OLD.username);
END;
CREATE TRIGGER users_search_rename AFTER UPDATE OF username ON users BEGIN
  INSERT INTO users_search(users_search, rowid, username) VALUES ('delete', OLD.id, OLD.username);
  INSERT INTO users_search(rowid, username) VALUES (NEW.id, NEW.username);
END;
CREATE INDEX slices_by_ip ON slices(ip);

-- version: 21
-- Placement reads each node's live slices and the memory their plans hold from here, kept by
-- triggers in the same transaction as the change, instead of summing every live slice at each
-- placement. Live: provisioning, running, stopped, destroying (records/placement.rs).
CREATE TABLE node_usage (
    node_id INTEGER PRIMARY KEY,
    n       INTEGER NOT NULL,
    mb      INTEGER NOT NULL
);
INSERT INTO node_usage
  SELECT s.node_id, count(*), sum(p.memory_mb) FROM slices s JOIN plans p ON p.id = s.plan_id
   WHERE s.node_id IS NOT NULL AND s.state IN ('provisioning', 'running', 'stopped', 'destroying')
   GROUP BY s.node_id;
CREATE TRIGGER node_usage_insert AFTER INSERT ON slices
  WHEN NEW.node_id IS NOT NULL AND NEW.state IN ('provisioning', 'running', 'stopped', 'destroying') BEGIN
  INSERT INTO node_usage VALUES (NEW.node_id, 1, (SELECT memory_mb FROM plans WHERE id = NEW.plan_id))
    ON CONFLICT(node_id) DO UPDATE SET n = n + 1, mb = mb + excluded.mb;
END;
CREATE TRIGGER node_usage_delete AFTER DELETE ON slices
  WHEN OLD.node_id IS NOT NULL AND OLD.state IN ('provisioning', 'running', 'stopped', 'destroying') BEGIN
  UPDATE node_usage SET n = n - 1, mb = mb - (SELECT memory_mb FROM plans WHERE id = OLD.plan_id)
   WHERE node_id = OLD.node_id;
END;
CREATE TRIGGER node_usage_update AFTER UPDATE OF state, node_id, plan_id ON slices BEGIN
  UPDATE node_usage SET n = n - 1, mb = mb - (SELECT memory_mb FROM plans WHERE id = OLD.plan_id)
   WHERE node_id = OLD.node_id
     AND OLD.state IN ('provisioning', 'running', 'stopped', 'destroying');
  INSERT INTO node_usage
    SELECT NEW.node_id, 1, (SELECT memory_mb FROM plans WHERE id = NEW.plan_id)
     WHERE NEW.node_id IS NOT NULL
       AND NEW.state IN ('provisioning', 'running', 'stopped', 'destroying')
    ON CONFLICT(node_id) DO UPDATE SET n = n + 1, mb = mb + excluded.mb;
END;
CREATE TRIGGER node_usage_plan AFTER UPDATE OF memory_mb ON plans BEGIN
  UPDATE node_usage SET mb = mb + (NEW.memory_mb - OLD.memory_mb) *
    (SELECT count(*) FROM slices s WHERE s.plan_id = NEW.id AND s.node_id = node_usage.node_id
        AND s.state IN ('provisioning', 'running', 'stopped', 'destroying'));
END;

-- version: 22
-- Courses and terms. A slice of a course ends with it (`ends_at`, the first second after the
-- course's last day), unless staff gave the slice a date of its own (`slices.expires_at`,
-- also what an approved extension sets). `term_stage` is how far the slice's end has gone:
-- 0 nothing yet, 1/2/3 the warning 14/3/1 days before was sent, 4 stopped at the end,
-- 5 destroyed after the grace period; `term_for` is the end date the stage was reached for
-- (a new date starts the warnings again) and `term_at` when the stage was reached.
CREATE TABLE courses (
    code       TEXT PRIMARY KEY COLLATE NOCASE,
    title      TEXT NOT NULL,
    ends_at    INTEGER NOT NULL,
    plan_id    INTEGER REFERENCES plans(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE course_staff (
    course  TEXT NOT NULL REFERENCES courses(code) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (course, user_id)
) WITHOUT ROWID;
ALTER TABLE slices ADD COLUMN expires_at INTEGER;
ALTER TABLE slices ADD COLUMN term_stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE slices ADD COLUMN term_for INTEGER;
ALTER TABLE slices ADD COLUMN term_at INTEGER;
CREATE INDEX slices_by_course ON slices(course) WHERE course <> '';
CREATE INDEX slices_by_expiry ON slices(expires_at) WHERE expires_at IS NOT NULL;

-- A student asks for more time for a slice; staff approve (the slice's end moves to `until`)
-- or deny, from the requests queue.
CREATE TABLE extensions (
    id         INTEGER PRIMARY KEY,
    slice_id   INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    asked_by   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    asked_at   INTEGER NOT NULL,
    until      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'approved', 'denied', 'withdrawn')),
    decided_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    decided_at INTEGER,
    note       TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX extensions_one_waiting ON extensions(slice_id) WHERE state = 'waiting';
CREATE INDEX extensions_waiting ON extensions(state, asked_at);

-- version: 23
-- The archive of a slice's /home its owner (or staff) asked for: packed on the slice's node
-- by an `export` job (`packing`), then `ready` to download (its size and SHA-256, as the node
-- made it), or `failed` with why. One row per slice: a new request replaces the last.
CREATE TABLE exports (
    slice_id   INTEGER PRIMARY KEY REFERENCES slices(id) ON DELETE CASCADE,
    node_id    INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    veid       INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('packing', 'ready', 'failed')),
    asked_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    asked_at   INTEGER NOT NULL,
    size       INTEGER,
    sha256     TEXT,
    ready_at   INTEGER,
    error      TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- version: 24
-- A slice made anew while its old container stays as it was: a move to another node, or a
-- reinstall from a template (on its own node). The row holds where it was (`from_*`, as the
-- slice was when asked) and where it goes (`to_*`, once a node with room gave a container id
-- and an address), the template, the state to come back to (`was`), whether /home goes along
-- and the archive that carries it. Both places count as taken while the row lives; the slice
-- takes the new one only when its container runs with the old /home in it, and the row goes
-- when the old container is removed (or, when it fails part-way, the new one).
CREATE TABLE moves (
    slice_id   INTEGER PRIMARY KEY REFERENCES slices(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('move', 'reinstall')),
    from_node  INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    from_veid  INTEGER,
    from_ip    TEXT,
    wanted     INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    to_node    INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    to_veid    INTEGER,
    to_ip      TEXT,
    template   TEXT NOT NULL,
    was        TEXT NOT NULL CHECK (was IN ('running', 'stopped', 'failed')),
    keep_home  INTEGER NOT NULL,
    sha256     TEXT,
    size       INTEGER,
    switched   INTEGER NOT NULL DEFAULT 0,
    asked_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    asked_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- The new container holds its plan's memory on its node from the moment it is placed.
CREATE TRIGGER node_usage_move_placed AFTER UPDATE OF to_node ON moves
  WHEN OLD.to_node IS NULL AND NEW.to_node IS NOT NULL AND NOT NEW.switched BEGIN
  INSERT INTO node_usage
    SELECT NEW.to_node, 1, p.memory_mb FROM slices s JOIN plans p ON p.id = s.plan_id
     WHERE s.id = NEW.slice_id
    ON CONFLICT(node_id) DO UPDATE SET n = n + 1, mb = mb + excluded.mb;
END;
-- When the slice takes the new place (counted by `slices` from then on) or the move ends
-- before that, the new container's count goes.
CREATE TRIGGER node_usage_move_switched AFTER UPDATE OF switched ON moves
  WHEN NEW.switched AND NOT OLD.switched AND NEW.to_node IS NOT NULL BEGIN
  UPDATE node_usage SET n = n - 1,
         mb = mb - coalesce((SELECT p.memory_mb FROM slices s JOIN plans p ON p.id = s.plan_id WHERE s.id = NEW.slice_id), 0)
   WHERE node_id = NEW.to_node;
END;
CREATE TRIGGER node_usage_move_gone AFTER DELETE ON moves
  WHEN OLD.to_node IS NOT NULL AND NOT OLD.switched BEGIN
  UPDATE node_usage SET n = n - 1,
         mb = mb - coalesce((SELECT p.memory_mb FROM slices s JOIN plans p ON p.id = s.plan_id WHERE s.id = OLD.slice_id), 0)
   WHERE node_id = OLD.to_node;
END;

-- version: 25
-- Snapshots of a slice's disk, as asked for and as its node has them (the job reads the
-- node's list back after each change and puts the rows right). `taking`, `restoring` and
-- `deleting` are asked and not yet done; `failed` says why in `error`. A plan says how many
-- a slice of it may keep.
ALTER TABLE plans ADD COLUMN snapshots INTEGER NOT NULL DEFAULT 3;
CREATE TABLE snapshots (
    slice_id   INTEGER NOT NULL REFERENCES slices(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    state      TEXT NOT NULL CHECK (state IN ('taking', 'ready', 'restoring', 'deleting', 'failed')),
    size       INTEGER,
    taken_at   INTEGER,
    asked_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    asked_at   INTEGER NOT NULL,
    error      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (slice_id, name)
) WITHOUT ROWID;

-- version: 26
-- A node's queued jobs, found at once: parked together when the node stops answering, woken
-- together when it answers again.
CREATE INDEX jobs_by_node ON jobs(node_id, state) WHERE node_id IS NOT NULL;

-- version: 27
-- Where an account's identity comes from: a password kept here (`local`), the college
-- directory (`ldap`; `external_id` is its DN) or single sign-on (`oidc`). A directory account
-- has no password here. Courses a person belongs to, and what says so (the directory's
-- groups, a roster staff uploaded).
ALTER TABLE users ADD COLUMN auth_source TEXT NOT NULL DEFAULT 'local'
    CHECK (auth_source IN ('local', 'ldap', 'oidc'));
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_by_external ON users(auth_source, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE course_members (
    course   TEXT NOT NULL REFERENCES courses(code) ON DELETE CASCADE ON UPDATE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source   TEXT NOT NULL CHECK (source IN ('directory', 'roster')),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (course, user_id, source)
) WITHOUT ROWID;
CREATE INDEX course_members_by_user ON course_members(user_id);

-- version: 28
-- Single sign-on log-ins that came back from the provider, by a hash of their state: each is
-- taken once, so a callback replayed (the same code and state again) is refused here before
-- the provider is asked. Rows older than the ten minutes a log-in may take are swept.
CREATE TABLE sso_states_used (
    state_hash BLOB PRIMARY KEY,
    used_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- version: 29
-- Course rosters: the students staff listed for a course, by address, username or both. One
-- on a course's roster who asks for a slice of it is approved at once, in the name of the
-- staff member who listed them (quotas still apply); each address listed is invited by mail
-- once. The account an entry stands for is found when needed (a confirmed address, or the
-- username of a directory or single sign-on account), so nothing here goes stale.
CREATE TABLE roster_entries (
    course     TEXT NOT NULL REFERENCES courses(code) ON DELETE CASCADE ON UPDATE CASCADE,
    entry      TEXT NOT NULL COLLATE NOCASE,
    email      TEXT COLLATE NOCASE,
    username   TEXT COLLATE NOCASE,
    name       TEXT NOT NULL DEFAULT '',
    added_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    added_at   INTEGER NOT NULL,
    invited_at INTEGER,
    PRIMARY KEY (course, entry),
    CHECK (email IS NOT NULL OR username IS NOT NULL)
) WITHOUT ROWID;
CREATE INDEX roster_by_email ON roster_entries(email) WHERE email IS NOT NULL;
CREATE INDEX roster_by_username ON roster_entries(username) WHERE username IS NOT NULL;

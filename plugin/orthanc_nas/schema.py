"""Versioned schema migrations of the plugin database: version -> statements, applied in order.

Never edit a released migration: add a new version.
"""

MIGRATIONS: dict[int, list[str]] = {
    1: [
        # Run-time settings changed by admins (override orthanc.json; see docs/configuration.md).
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL
        )""",
    ],
    2: [
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
            display_name TEXT NOT NULL DEFAULT '',
            email TEXT NOT NULL DEFAULT '',
            enabled INTEGER NOT NULL DEFAULT 1,
            pin_hash TEXT NOT NULL,
            must_change_pin INTEGER NOT NULL DEFAULT 0,
            totp_secret BLOB,
            totp_enabled INTEGER NOT NULL DEFAULT 0,
            totp_last_step INTEGER NOT NULL DEFAULT 0,
            failed_count INTEGER NOT NULL DEFAULT 0,
            locked_until REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            last_login_at REAL,
            preferences TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            pending INTEGER NOT NULL,
            created_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            expires_at REAL NOT NULL,
            ip TEXT NOT NULL DEFAULT '',
            user_agent TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX sessions_user ON sessions(user_id)",
        """CREATE TABLE backup_codes (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            used_at REAL
        )""",
        "CREATE INDEX backup_codes_user ON backup_codes(user_id)",
        """CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used_at REAL
        )""",
        """CREATE TABLE throttle (
            key TEXT PRIMARY KEY,
            window_start REAL NOT NULL,
            count INTEGER NOT NULL
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            ip TEXT NOT NULL,
            event TEXT NOT NULL,
            outcome TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_ts ON audit(ts)",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
    ],
}
MIGRATIONS[3] = [
    # TOTP secret waiting for its first correct code (enrollment or re-enrollment).
    "ALTER TABLE users ADD COLUMN totp_pending_secret BLOB",
]
MIGRATIONS[4] = [
    # The mirror's durable outbox: one row per instance, written by the on-stored hook,
    # drained by the mirror worker process.
    """CREATE TABLE mirror_queue (
        instance_id TEXT PRIMARY KEY,
        gen INTEGER NOT NULL DEFAULT 1,
        op TEXT NOT NULL DEFAULT 'put' CHECK (op IN ('put', 'delete')),
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
        source TEXT NOT NULL,
        spool TEXT,
        size INTEGER,
        sha256 TEXT,
        remote_path TEXT,
        patient_id TEXT,
        study_uid TEXT,
        series_uid TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        enqueued_at REAL NOT NULL,
        done_at REAL
    )""",
    "CREATE INDEX mirror_queue_due ON mirror_queue(state, next_attempt_at)",
    "CREATE INDEX mirror_queue_series ON mirror_queue(series_uid, state)",
    # What the worker last saw of the NAS (one row).
    """CREATE TABLE nas_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        connected INTEGER NOT NULL,
        last_error TEXT,
        last_error_at REAL,
        total_bytes INTEGER,
        free_bytes INTEGER,
        throughput_bps REAL,
        worker_pid INTEGER,
        updated_at REAL NOT NULL
    )""",
]
MIGRATIONS[5] = [
    # Who brought each instance in: the uploader, or the user mapped to the calling AE title.
    """CREATE TABLE instance_owners (
        instance_id TEXT PRIMARY KEY,
        study_id TEXT NOT NULL,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        source TEXT NOT NULL CHECK (source IN ('upload', 'cstore')),
        calling_aet TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX instance_owners_user ON instance_owners(user_id, study_id)",
    "CREATE INDEX instance_owners_study ON instance_owners(study_id)",
    # Studies given to a user (by an admin, or by a user who can see them).
    """CREATE TABLE study_assignments (
        study_id TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        assigned_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (study_id, user_id)
    )""",
    "CREATE INDEX study_assignments_user ON study_assignments(user_id)",
    """CREATE TABLE study_tags (
        study_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (study_id, tag)
    )""",
    "CREATE INDEX study_tags_tag ON study_tags(tag)",
    """CREATE TABLE shares (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        level TEXT NOT NULL CHECK (level IN ('study', 'series', 'instance')),
        resource_id TEXT NOT NULL,
        study_id TEXT NOT NULL,
        created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        max_views INTEGER NOT NULL,
        views INTEGER NOT NULL DEFAULT 0,
        pin_hash TEXT,
        pin_failures INTEGER NOT NULL DEFAULT 0,
        allow_download INTEGER NOT NULL DEFAULT 0,
        revoked_at REAL,
        expiry_audited INTEGER NOT NULL DEFAULT 0,
        last_opened_at REAL
    )""",
    "CREATE INDEX shares_creator ON shares(created_by)",
    # One row per opening: the viewer's cookie, valid for a limited time.
    """CREATE TABLE share_views (
        id INTEGER PRIMARY KEY,
        share_id INTEGER NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
        view_hash TEXT NOT NULL UNIQUE,
        opened_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        ip TEXT NOT NULL
    )""",
]
MIGRATIONS[6] = [
    "CREATE INDEX mirror_queue_study ON mirror_queue(study_uid, state)",
]
MIGRATIONS[7] = [
    # Tamper evidence: each row's MAC covers the previous row's MAC and its own content.
    # DICOM PS3.15 A.5 vocabulary: EventID code and outcome (0, 4, 8, 12).
    "ALTER TABLE audit ADD COLUMN event_code TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE audit ADD COLUMN outcome_code INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE audit ADD COLUMN patient_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE audit ADD COLUMN study_uid TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE audit ADD COLUMN mac TEXT",
    "CREATE INDEX audit_event ON audit(event, ts)",
    "CREATE INDEX audit_actor ON audit(actor, ts)",
    # Retention pruning is the one exception to "no DELETE": only below the gate that the
    # pruning transaction opens (and closes), and it leaves an anchor for verification.
    """CREATE TABLE audit_prune_gate (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        below INTEGER NOT NULL
    )""",
    "INSERT INTO audit_prune_gate VALUES (1, 0)",
    """CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        first_id INTEGER NOT NULL,
        prev_mac TEXT NOT NULL,
        pruned_at REAL NOT NULL
    )""",
    "DROP TRIGGER audit_no_delete",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " WHEN OLD.id >= (SELECT below FROM audit_prune_gate WHERE id = 1)"
    " BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END",
]
MIGRATIONS[8] = [
    # Study summaries as Orthanc's index gave them, so an unfiltered listing of tens of
    # thousands of studies need not expand every study each time. Dropped when Orthanc
    # reports the study stable (changed) or deleted; unknown ids are fetched again.
    """CREATE TABLE study_index (
        study_id TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
]
MIGRATIONS[9] = [
    # Forwarding of the audit trail to a syslog collector: the trail itself is the durable
    # queue, this is how far the collector has acknowledged it.
    """CREATE TABLE audit_forward (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL,
        updated_at REAL NOT NULL
    )""",
    # "DICOM Instances Accessed" is written once per study per session (or token per day):
    # what each scope has already been recorded for.
    """CREATE TABLE audit_access_seen (
        scope TEXT NOT NULL,
        resource TEXT NOT NULL,
        kind TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (scope, resource, kind)
    ) WITHOUT ROWID""",
    "CREATE INDEX audit_access_seen_at ON audit_access_seen(seen_at)",
]
MIGRATIONS[10] = [
    # Lockout per (account, source) (NIST SP 800-63B 5.2.2): someone elsewhere can no longer
    # lock a user out. users.failed_count becomes the account-wide count since failures_since;
    # locked_out is set when it reaches the ceiling (only an admin or the CLI lifts it).
    """CREATE TABLE login_failures (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        failed_count INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        last_failure_at REAL NOT NULL,
        PRIMARY KEY (user_id, source)
    ) WITHOUT ROWID""",
    "ALTER TABLE users ADD COLUMN failures_since REAL NOT NULL DEFAULT 0",
    "ALTER TABLE users ADD COLUMN locked_out INTEGER NOT NULL DEFAULT 0",
    "UPDATE users SET failed_count = 0",
]
MIGRATIONS[11] = [
    # The scrub: when each NAS copy was last re-read and found equal to its SHA-256.
    "ALTER TABLE mirror_queue ADD COLUMN verified_at REAL",
    # Which NAS the copy went to (host, port, share and folder, or the local folder): the
    # scrub reads only copies on the NAS configured now.
    "ALTER TABLE mirror_queue ADD COLUMN target TEXT",
    "CREATE INDEX mirror_queue_scrub ON mirror_queue(state, verified_at)",
]
MIGRATIONS[12] = [
    # DICOM modalities declared on the admin screen: kept here (Orthanc 1.10.1 forgets a
    # PUT /modalities at restart) and applied to Orthanc at start and on each change. The
    # owner gets what the modality sends (it replaces the run-time AE-title -> user map).
    """CREATE TABLE modalities (
        name TEXT PRIMARY KEY,
        aet TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        owner_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        updated_at REAL NOT NULL,
        updated_by TEXT NOT NULL
    )""",
    # Instances received per day, by source (dicom: the calling AE; upload; stow; other):
    # counted in memory by the ingest hook, added here every few seconds.
    """CREATE TABLE received_daily (
        day TEXT NOT NULL,
        source TEXT NOT NULL,
        origin TEXT NOT NULL,
        instances INTEGER NOT NULL,
        PRIMARY KEY (day, source, origin)
    ) WITHOUT ROWID""",
    # Samples of the mirror's backlog and throughput, for the NAS page's 24 h chart.
    """CREATE TABLE mirror_samples (
        ts REAL PRIMARY KEY,
        pending INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        throughput_bps REAL
    )""",
]

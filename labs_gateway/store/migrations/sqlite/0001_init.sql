-- labs store, version 1: keys (hashed secrets), limit counters, usage rows. Times: unix seconds
-- (keys, counters) and unix milliseconds (usage rows).
CREATE TABLE labs_keys (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'api',
    models TEXT NOT NULL DEFAULT '',
    rpm INTEGER,
    tpm INTEGER,
    max_streams INTEGER,
    day_tokens INTEGER,
    month_tokens INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE labs_counters (
    name TEXT NOT NULL,
    win TEXT NOT NULL,
    start INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, win, start)
);
CREATE TABLE labs_usage (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    key_name TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    finish_reason TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX labs_usage_ts ON labs_usage (ts_ms);
CREATE INDEX labs_usage_key_ts ON labs_usage (key_name, ts_ms);

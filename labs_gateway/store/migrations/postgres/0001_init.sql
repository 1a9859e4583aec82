-- labs store, version 1: keys (hashed secrets), limit counters, usage rows. Times: unix seconds
-- (keys, counters) and unix milliseconds (usage rows).
CREATE TABLE labs_keys (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'api',
    models TEXT NOT NULL DEFAULT '',
    rpm BIGINT,
    tpm BIGINT,
    max_streams BIGINT,
    day_tokens BIGINT,
    month_tokens BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE labs_counters (
    name TEXT NOT NULL,
    win TEXT NOT NULL,
    start BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (name, win, start)
);
CREATE TABLE labs_usage (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    key_name TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL DEFAULT '',
    status BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    finish_reason TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX labs_usage_ts ON labs_usage (ts_ms);
CREATE INDEX labs_usage_key_ts ON labs_usage (key_name, ts_ms);

-- The embedded store's schema. Identities are 16-byte HMAC pseudonyms: no raw address or client id is stored.
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per identity seen within the retention (--retention-days). left_ms: set by /leave, cleared by the next
-- heartbeat. hidden: 1 while its last heartbeat opted out of presence lookups ("presence": false); databases from
-- before it get the column when opened (sqlite.ts).
CREATE TABLE IF NOT EXISTS identities (
  id BLOB PRIMARY KEY,
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  left_ms INTEGER,
  hidden INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Serves "active since T" at minute edges, the online set at start-up and the minute counts rebuild.
CREATE INDEX IF NOT EXISTS identities_by_last_seen ON identities (last_seen_ms);

-- Who is on which channel; rows older than the heartbeat timeout are pruned as the service runs.
CREATE TABLE IF NOT EXISTS channel_presence (
  id BLOB NOT NULL,
  channel TEXT NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (id, channel)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS channel_presence_by_last_seen ON channel_presence (last_seen_ms);

-- Per calendar day (configured time zone): exact actives and new identities.
CREATE TABLE IF NOT EXISTS daily_activity (
  day TEXT PRIMARY KEY,
  active INTEGER NOT NULL DEFAULT 0,
  new INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Each day's HyperLogLog registers (16 KiB) for weekly and monthly distinct counts. A table of its
-- own (with rowids, as SQLite advises for large rows): in the rows of daily_activity, a year of
-- counts was a scan of 6 MB.
CREATE TABLE IF NOT EXISTS day_sketches (
  day TEXT PRIMARY KEY,
  sketch BLOB NOT NULL
);

-- The concurrency history (src/store/concurrency.ts): one row per series (channel, '' for the total) per hour with
-- anyone online in it. minutes: 60 slots of 16 bytes while the minutes are kept (--history-minute-days), then NULL;
-- the row itself is kept for --max-days. Rows of about 1 KB: a rowid table, as SQLite advises for large rows.
CREATE TABLE IF NOT EXISTS concurrency_hours (
  channel TEXT NOT NULL,
  hour_ms INTEGER NOT NULL,
  max INTEGER NOT NULL,
  max_at_ms INTEGER NOT NULL,
  min INTEGER NOT NULL,
  mean_sum REAL NOT NULL,
  recorded INTEGER NOT NULL,
  minutes BLOB,
  UNIQUE (channel, hour_ms)
);

CREATE INDEX IF NOT EXISTS concurrency_hours_by_hour ON concurrency_hours (hour_ms);

-- The all-time peak of each series, written in the same commit as the heartbeat that reached it.
CREATE TABLE IF NOT EXISTS concurrency_peaks (
  channel TEXT PRIMARY KEY,
  online INTEGER NOT NULL,
  at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The webhook outbox (docs/alerts.md): one row per event and receiver, written before the heartbeats that raised the
-- event are acknowledged; kept after delivery (or giving up) for GET /webhooks/deliveries, up to the outbox's bound.
CREATE TABLE IF NOT EXISTS webhook_outbox (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  receiver TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_ms INTEGER,
  created_ms INTEGER NOT NULL,
  done_ms INTEGER
);

CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (status, next_attempt_ms);

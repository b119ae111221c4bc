-- The server's own tables, beside the synced tables of domain.sql in the same database.

-- Small facts: the schema the database was made with, the newest version.
CREATE TABLE IF NOT EXISTS moat_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value ANY
) STRICT;

-- The change log: one entry per commit that changed synced rows, under one global, increasing version.
-- `entry` is a JSON array of {"route": [routing values], "change": <change of the wire's diff format>}.
-- A channel's log is this log seen through the channel's view. Old entries are compacted away; a client
-- whose cursor is older than the oldest entry gets a fresh snapshot.
CREATE TABLE IF NOT EXISTS moat_log (
    version INTEGER PRIMARY KEY,
    entry   TEXT NOT NULL
) STRICT;

-- The outcome of every mutation, written in the transaction that applied it: a replayed push gets
-- the same answer and is never applied twice.
CREATE TABLE IF NOT EXISTS moat_mutations (
    user_id     TEXT NOT NULL,
    mutation_id TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (user_id, mutation_id)
) STRICT, WITHOUT ROWID;

-- Who changed which record, when: one row per changed row per commit, for a record's history (the
-- `history` message). `row_key` is the record's id as clients name it; `user_id` is empty for an
-- operator's or a migration's change. Trimmed with the change log.
CREATE TABLE IF NOT EXISTS moat_history (
    table_name TEXT NOT NULL,
    row_key    TEXT NOT NULL,
    version    INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    op         TEXT NOT NULL,
    columns    TEXT NOT NULL,
    PRIMARY KEY (table_name, row_key, version)
) STRICT, WITHOUT ROWID;

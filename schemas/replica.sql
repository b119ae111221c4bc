-- The client replica's own tables, beside the synced tables' projections (created from domain.sql)
-- and their golden copies `server_data_<table>` (created from the schema model). One SQLite file.

-- Small facts about this replica: its client id (made once, at creation), per-channel cursors.
CREATE TABLE IF NOT EXISTS moat_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value ANY
) STRICT;

-- Local changesets not yet confirmed by the server, oldest first. `diff` is the JSON diff exactly as it
-- is sent on the wire. A pending overlay is part of the projection; a rejected one is not, and stays
-- here with the server's reason until the user dismisses it.
CREATE TABLE IF NOT EXISTS overlays (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mutation_id TEXT NOT NULL UNIQUE,
    diff        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'rejected')),
    reason      TEXT,
    created_ms  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

-- Conflicts the server reported for this client's writes, kept until the user resolves them.
-- `conflict` is the JSON conflict object from the wire (table, key, columns with base/theirs/mine).
CREATE TABLE IF NOT EXISTS conflicts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mutation_id TEXT NOT NULL,
    conflict    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

-- Full-text indexes still being filled, a step at a time (`ui::fill_search_step`): a new one holds
-- the rows of its `source` table up to rowid `upto`, and its triggers keep exactly those in step. The
-- row goes when the index holds every row (the lists search it from then on).
CREATE TABLE IF NOT EXISTS moat_search_fill (
    name   TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    fields TEXT NOT NULL,
    upto   INTEGER NOT NULL
) STRICT;

-- Counts the lists show without reading the rows (`ui::IndexJob::Tally`): for each object type, how
-- many records it has (`col` and `val` empty) and how many hold each value of its facet and
-- assignee fields. Derived from the metadata like the lists' indexes, made at an idle turn, and kept
-- in step by triggers on the object type's table.
CREATE TABLE IF NOT EXISTS moat_tally (
    kind TEXT NOT NULL,
    col  TEXT NOT NULL,
    val  ANY NOT NULL,
    n    INTEGER NOT NULL,
    PRIMARY KEY (kind, col, val)
) STRICT, WITHOUT ROWID;

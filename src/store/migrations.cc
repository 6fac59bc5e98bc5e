#include "store/migrations.h"

namespace tandem {

std::span<const Migration> SqliteMigrations() {
  static const Migration kMigrations[] = {
      {1, "cms versions",
       "CREATE TABLE cms_versions ("
       "  version INTEGER PRIMARY KEY,"
       "  published_at_ms INTEGER NOT NULL,"
       "  document TEXT NOT NULL)"},
      {2, "users and change log",
       "CREATE TABLE users ("
       "  uri TEXT PRIMARY KEY,"
       "  username TEXT NOT NULL,"
       "  domain TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  ha1_md5 TEXT NOT NULL,"
       "  ha1_sha256 TEXT NOT NULL,"
       "  ha1_md5_full TEXT NOT NULL,"
       "  ha1_sha256_full TEXT NOT NULL,"
       "  created_at_ms INTEGER NOT NULL);"
       "CREATE UNIQUE INDEX users_by_name ON users(username, domain);"
       "CREATE TABLE change_log ("
       "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
       "  at_ms INTEGER NOT NULL,"
       "  module TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  key TEXT NOT NULL,"
       "  op TEXT NOT NULL,"
       "  payload TEXT NOT NULL)"},
      // Lists (groups, attendees, allow/block) are JSON arrays of strings. Every row
      // carries the home pool of the user (or meeting) it belongs to.
      {3, "user data and conference data",
       "CREATE TABLE contact_groups ("
       "  owner TEXT NOT NULL,"
       "  name TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  created_at_ms INTEGER NOT NULL,"
       "  PRIMARY KEY (owner, name));"
       "CREATE TABLE contacts ("
       "  owner TEXT NOT NULL,"
       "  contact TEXT NOT NULL,"
       "  display_name TEXT NOT NULL,"
       "  groups TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  updated_at_ms INTEGER NOT NULL,"
       "  PRIMARY KEY (owner, contact));"
       "CREATE TABLE presence_notes ("
       "  owner TEXT PRIMARY KEY,"
       "  note TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  updated_at_ms INTEGER NOT NULL);"
       "CREATE TABLE privacy_settings ("
       "  owner TEXT PRIMARY KEY,"
       "  policy TEXT NOT NULL CHECK (policy IN ('allow-contacts', 'allow-all', 'allow-listed')),"
       "  allow_list TEXT NOT NULL,"
       "  block_list TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  updated_at_ms INTEGER NOT NULL);"
       "CREATE TABLE meetings ("
       "  id TEXT PRIMARY KEY,"
       "  organizer TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  subject TEXT NOT NULL,"
       "  start_ms INTEGER NOT NULL,"
       "  end_ms INTEGER NOT NULL,"
       "  attendees TEXT NOT NULL,"
       "  pin TEXT NOT NULL,"
       "  lobby TEXT NOT NULL CHECK (lobby IN ('open', 'organizer-admits', 'attendees-only')),"
       "  state TEXT NOT NULL CHECK (state IN ('scheduled', 'cancelled')),"
       "  created_ms INTEGER NOT NULL,"
       "  updated_ms INTEGER NOT NULL,"
       "  CHECK (end_ms > start_ms));"
       "CREATE INDEX meetings_by_organizer ON meetings(organizer, start_ms);"
       "CREATE INDEX meetings_by_home_pool ON meetings(home_pool, start_ms);"
       // The bytes come last so listing metadata does not read them.
       "CREATE TABLE meeting_content ("
       "  meeting_id TEXT NOT NULL,"
       "  name TEXT NOT NULL,"
       "  size INTEGER NOT NULL,"
       "  sha256 TEXT NOT NULL,"
       "  home_pool TEXT NOT NULL,"
       "  uploaded_ms INTEGER NOT NULL,"
       "  content BLOB NOT NULL,"
       "  PRIMARY KEY (meeting_id, name))"},
      {4, "pool membership leases",
       "CREATE TABLE pool_leases ("
       "  server_id TEXT PRIMARY KEY,"
       "  pool TEXT NOT NULL,"
       "  renewed_at_ms INTEGER NOT NULL,"
       "  expires_at_ms INTEGER NOT NULL)"},
      // The Backup Service's bookkeeping (store.h, "Replication"); none of it is logged.
      {5, "replication",
       "CREATE INDEX change_log_by_module ON change_log(module, seq);"
       "CREATE TABLE import_progress ("
       "  source_pool TEXT NOT NULL,"
       "  module TEXT NOT NULL,"
       "  applied_seq INTEGER NOT NULL,"
       "  applied_at_ms INTEGER NOT NULL,"
       "  source_at_ms INTEGER NOT NULL,"
       "  snapshot_seq INTEGER NOT NULL,"
       "  PRIMARY KEY (source_pool, module));"
       "CREATE TABLE export_progress ("
       "  partner_pool TEXT NOT NULL,"
       "  module TEXT NOT NULL,"
       "  acked_seq INTEGER NOT NULL,"
       "  acked_at_ms INTEGER NOT NULL,"
       "  PRIMARY KEY (partner_pool, module));"
       "CREATE TABLE named_leases ("
       "  name TEXT PRIMARY KEY,"
       "  holder TEXT NOT NULL,"
       "  expires_at_ms INTEGER NOT NULL);"
       "CREATE TABLE settings ("
       "  key TEXT PRIMARY KEY,"
       "  value TEXT NOT NULL)"},
      // Soft state written back for takeover (see store.h): no change-log records.
      {6, "pool soft state",
       "CREATE TABLE soft_state ("
       "  pool TEXT NOT NULL,"
       "  kind TEXT NOT NULL,"
       "  key TEXT NOT NULL,"
       "  routing_group INTEGER NOT NULL,"
       "  expires_at_ms INTEGER NOT NULL,"
       "  payload TEXT NOT NULL,"
       "  PRIMARY KEY (pool, kind, key));"
       "CREATE INDEX soft_state_by_group ON soft_state(pool, routing_group);"
       "CREATE INDEX soft_state_by_expiry ON soft_state(pool, expires_at_ms)"},
  };
  return kMigrations;
}

// PostgreSQL: BIGINT for times and versions, BIGSERIAL for the change-log sequence,
// BYTEA for content. Every text column sorts bytewise (COLLATE "C"), as SQLite's
// BINARY does, so listings come out in the same order whatever the database locale.
std::span<const Migration> PostgresMigrations() {
  static const Migration kMigrations[] = {
      {1, "cms versions",
       "CREATE TABLE cms_versions ("
       "  version BIGINT PRIMARY KEY,"
       "  published_at_ms BIGINT NOT NULL,"
       "  document TEXT NOT NULL)"},
      {2, "users and change log",
       "CREATE TABLE users ("
       "  uri TEXT COLLATE \"C\" PRIMARY KEY,"
       "  username TEXT COLLATE \"C\" NOT NULL,"
       "  domain TEXT COLLATE \"C\" NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  ha1_md5 TEXT NOT NULL,"
       "  ha1_sha256 TEXT NOT NULL,"
       "  ha1_md5_full TEXT NOT NULL,"
       "  ha1_sha256_full TEXT NOT NULL,"
       "  created_at_ms BIGINT NOT NULL);"
       "CREATE UNIQUE INDEX users_by_name ON users(username, domain);"
       // seq: strictly increasing and, because writers hold the store's writer lock
       // until they commit, in commit order (see postgres_store.cc).
       "CREATE TABLE change_log ("
       "  seq BIGSERIAL PRIMARY KEY,"
       "  at_ms BIGINT NOT NULL,"
       "  module TEXT COLLATE \"C\" NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  key TEXT COLLATE \"C\" NOT NULL,"
       "  op TEXT NOT NULL,"
       "  payload TEXT NOT NULL)"},
      // Lists (groups, attendees, allow/block) are JSON arrays of strings, as in
      // SQLite, so both back-ends carry the same payloads.
      {3, "user data and conference data",
       "CREATE TABLE contact_groups ("
       "  owner TEXT COLLATE \"C\" NOT NULL,"
       "  name TEXT COLLATE \"C\" NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  created_at_ms BIGINT NOT NULL,"
       "  PRIMARY KEY (owner, name));"
       "CREATE TABLE contacts ("
       "  owner TEXT COLLATE \"C\" NOT NULL,"
       "  contact TEXT COLLATE \"C\" NOT NULL,"
       "  display_name TEXT NOT NULL,"
       "  groups TEXT NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  updated_at_ms BIGINT NOT NULL,"
       "  PRIMARY KEY (owner, contact));"
       "CREATE TABLE presence_notes ("
       "  owner TEXT COLLATE \"C\" PRIMARY KEY,"
       "  note TEXT NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  updated_at_ms BIGINT NOT NULL);"
       "CREATE TABLE privacy_settings ("
       "  owner TEXT COLLATE \"C\" PRIMARY KEY,"
       "  policy TEXT NOT NULL CHECK (policy IN ('allow-contacts', 'allow-all', 'allow-listed')),"
       "  allow_list TEXT NOT NULL,"
       "  block_list TEXT NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  updated_at_ms BIGINT NOT NULL);"
       "CREATE TABLE meetings ("
       "  id TEXT COLLATE \"C\" PRIMARY KEY,"
       "  organizer TEXT COLLATE \"C\" NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  subject TEXT NOT NULL,"
       "  start_ms BIGINT NOT NULL,"
       "  end_ms BIGINT NOT NULL,"
       "  attendees TEXT NOT NULL,"
       "  pin TEXT NOT NULL,"
       "  lobby TEXT NOT NULL CHECK (lobby IN ('open', 'organizer-admits', 'attendees-only')),"
       "  state TEXT NOT NULL CHECK (state IN ('scheduled', 'cancelled')),"
       "  created_ms BIGINT NOT NULL,"
       "  updated_ms BIGINT NOT NULL,"
       "  CHECK (end_ms > start_ms));"
       "CREATE INDEX meetings_by_organizer ON meetings(organizer, start_ms);"
       "CREATE INDEX meetings_by_home_pool ON meetings(home_pool, start_ms);"
       // BYTEA is stored out of line (TOAST) once large, so listing metadata does
       // not read the bytes.
       "CREATE TABLE meeting_content ("
       "  meeting_id TEXT COLLATE \"C\" NOT NULL,"
       "  name TEXT COLLATE \"C\" NOT NULL,"
       "  size BIGINT NOT NULL,"
       "  sha256 TEXT NOT NULL,"
       "  home_pool TEXT COLLATE \"C\" NOT NULL,"
       "  uploaded_ms BIGINT NOT NULL,"
       "  content BYTEA NOT NULL,"
       "  PRIMARY KEY (meeting_id, name))"},
      {4, "pool membership leases",
       "CREATE TABLE pool_leases ("
       "  server_id TEXT COLLATE \"C\" PRIMARY KEY,"
       "  pool TEXT COLLATE \"C\" NOT NULL,"
       "  renewed_at_ms BIGINT NOT NULL,"
       "  expires_at_ms BIGINT NOT NULL)"},
      {5, "replication",
       "CREATE INDEX change_log_by_module ON change_log(module, seq);"
       "CREATE TABLE import_progress ("
       "  source_pool TEXT COLLATE \"C\" NOT NULL,"
       "  module TEXT COLLATE \"C\" NOT NULL,"
       "  applied_seq BIGINT NOT NULL,"
       "  applied_at_ms BIGINT NOT NULL,"
       "  source_at_ms BIGINT NOT NULL,"
       "  snapshot_seq BIGINT NOT NULL,"
       "  PRIMARY KEY (source_pool, module));"
       "CREATE TABLE export_progress ("
       "  partner_pool TEXT COLLATE \"C\" NOT NULL,"
       "  module TEXT COLLATE \"C\" NOT NULL,"
       "  acked_seq BIGINT NOT NULL,"
       "  acked_at_ms BIGINT NOT NULL,"
       "  PRIMARY KEY (partner_pool, module));"
       "CREATE TABLE named_leases ("
       "  name TEXT COLLATE \"C\" PRIMARY KEY,"
       "  holder TEXT COLLATE \"C\" NOT NULL,"
       "  expires_at_ms BIGINT NOT NULL);"
       "CREATE TABLE settings ("
       "  key TEXT COLLATE \"C\" PRIMARY KEY,"
       "  value TEXT NOT NULL)"},
      {6, "pool soft state",
       "CREATE TABLE soft_state ("
       "  pool TEXT COLLATE \"C\" NOT NULL,"
       "  kind TEXT COLLATE \"C\" NOT NULL,"
       "  key TEXT COLLATE \"C\" NOT NULL,"
       "  routing_group BIGINT NOT NULL,"
       "  expires_at_ms BIGINT NOT NULL,"
       "  payload TEXT NOT NULL,"
       "  PRIMARY KEY (pool, kind, key));"
       "CREATE INDEX soft_state_by_group ON soft_state(pool, routing_group);"
       "CREATE INDEX soft_state_by_expiry ON soft_state(pool, expires_at_ms)"},
  };
  return kMigrations;
}

}  // namespace tandem

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
  };
  return kMigrations;
}

}  // namespace tandem

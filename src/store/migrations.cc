#include "store/migrations.h"

namespace tandem {

std::span<const Migration> SqliteMigrations() {
  static const Migration kMigrations[] = {
      {1, "cms versions",
       "CREATE TABLE cms_versions ("
       "  version INTEGER PRIMARY KEY,"
       "  published_at_ms INTEGER NOT NULL,"
       "  document TEXT NOT NULL)"},
  };
  return kMigrations;
}

}  // namespace tandem

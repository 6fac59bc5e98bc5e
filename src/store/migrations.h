// The schema of the back-end store as an ordered list of migrations. A migration,
// once released, never changes: add a new one instead.
#pragma once

#include <span>

namespace tandem {

struct Migration {
  int version;
  const char* name;
  const char* sql;  // one or more statements
};

// The same schema, version for version, in each back-end's dialect.
std::span<const Migration> SqliteMigrations();
std::span<const Migration> PostgresMigrations();

}  // namespace tandem

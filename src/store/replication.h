// What the back-ends share to implement the Replication section of store.h: the
// tables each module is made of, turning their rows into change-log keys and
// payloads (ScanRows) or snapshot chunks (ScanSnapshot) and a partner's payloads and
// chunks back into rows (ApplyChanges, ApplySnapshotChunk), merging per-table scans
// into key order, and the rules of the import progress. A back-end only supplies the SQL plumbing (ReplicationTx,
// RowCursor) and its placeholder syntax.
//
// Thread-safety: free functions and immutable tables; a ReplicationTx or RowCursor
// belongs to the one transaction that made it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.h"
#include "store/store.h"

namespace tandem {

// A SQL value: text, integer, or bytes (SQLite BLOB, PostgreSQL BYTEA).
struct SqlBytes {
  std::string bytes;
};
using SqlValue = std::variant<std::string, int64_t, SqlBytes>;
using SqlRow = std::vector<SqlValue>;

enum class RowKind { kUser, kContact, kGroup, kNote, kPrivacy, kMeeting, kContent, kCmsVersion };

// One table a module replicates. Its rows travel as SqlRows holding `columns` in order.
struct ReplicatedTable {
  RowKind kind;
  std::string_view module;
  const char* name;
  const char* columns;   // "a, b, c": the SELECT and INSERT column list
  const char* types;     // one letter per column: 't' text, 'i' integer, 'b' bytes
  int key_columns;       // the first `key_columns` columns are the primary key
  bool homed;            // has a home_pool column (all but cms_versions)
  // The change-log key is the first column, alone or followed by "#...": scans can
  // bound that column by the key range.
  bool owner_keyed;
};

// The tables of `module`; kInvalidArgument for an unknown module.
Result<std::span<const ReplicatedTable>> ReplicatedTables(std::string_view module);

// Parameter `index` (from 1) in the back-end's syntax: "?" or "$<index>".
using Placeholder = std::string (*)(int index);

// SQL over one table, '?'-free (built with the back-end's placeholders).
struct SqlQuery {
  std::string sql;
  std::vector<SqlValue> params;
};
// The rows a ScanRows of [key_from, key_to) may need, in primary-key order (which is
// key order, see MergeRows): homed in `home_pool` unless the table is not homed.
SqlQuery ScanQuery(const ReplicatedTable& table, std::string_view home_pool, std::string_view key_from,
                   std::string_view key_to, Placeholder placeholder);
// INSERT of `rows` rows, replacing a row with the same primary key (CMS versions:
// inserted only if missing, a version never changes).
std::string UpsertSql(const ReplicatedTable& table, int rows, Placeholder placeholder);
// The same for every row of the table (or view) `source`, which has the same columns.
std::string UpsertFromSql(const ReplicatedTable& table, std::string_view source);
// DELETE by primary key (the first key_columns values).
std::string DeleteSql(const ReplicatedTable& table, Placeholder placeholder);
// DELETE of every row homed in the pool given as parameter 1.
std::string DeletePoolSql(const ReplicatedTable& table, Placeholder placeholder);

// One row write that a partner's record (or snapshot row) asks for.
struct RowWrite {
  const ReplicatedTable* table = nullptr;
  std::string key;
  bool remove = false;
  SqlRow values;  // every column (upsert) or the primary-key columns (remove)
};
// A back-end's write transaction, as the shared apply logic drives it.
class ReplicationTx {
 public:
  virtual ~ReplicationTx() = default;
  // The progress row of (source_pool, module), created (zero) if missing and locked
  // against concurrent applies until the transaction ends.
  virtual Result<ImportProgress> LockImportProgress(std::string_view source_pool, std::string_view module) = 0;
  virtual Status SaveImportProgress(const ImportProgress& progress) = 0;
  // Writes of one table; the keys are distinct.
  virtual Status Upsert(const ReplicatedTable& table, std::span<const RowWrite* const> rows) = 0;
  virtual Status Remove(const ReplicatedTable& table, std::span<const RowWrite* const> rows) = 0;
  virtual Status RemovePool(const ReplicatedTable& table, std::string_view home_pool) = 0;
};

// Runs `body` in one write transaction of the back-end (again, if it retries).
using InReplicationTx = std::function<Status(const std::function<Status(ReplicationTx&)>& body)>;

// Store::ApplyChanges and Store::ApplySnapshotChunk: every record or row is checked
// and parsed before the transaction starts (kInvalidArgument for the first bad one),
// then written in it.
Result<ImportProgress> ApplyChangesWith(const InReplicationTx& transact, std::string_view source_pool,
                                        std::string_view module, const std::vector<ChangeRecord>& batch);
Result<ImportProgress> ApplySnapshotChunkWith(const InReplicationTx& transact, std::string_view source_pool,
                                              std::string_view module, std::string_view home_pool,
                                              int64_t snapshot_seq, bool first, bool last, std::string_view chunk);

// One table's rows, from a back-end's open query in the consistent read of a scan.
class RowCursor {
 public:
  virtual ~RowCursor() = default;
  // The next row into `*row`; false at the end.
  virtual Result<bool> Next(SqlRow* row) = 0;
};
using OpenCursor = std::function<Result<std::unique_ptr<RowCursor>>(const ReplicatedTable&, const SqlQuery&)>;

// The body of ScanRows inside the back-end's consistent read: opens a cursor per table
// of `module` and merges them into key order (kCorruption, rather than a wrong order,
// should a row's key not sort where its primary key does).
Status ScanTables(std::string_view module, std::string_view home_pool, std::string_view key_from,
                  std::string_view key_to, int chunk_rows, Placeholder placeholder, const OpenCursor& open,
                  const std::function<Status(std::vector<ReplicatedRow>&&)>& sink);
// The body of ScanSnapshot, merged the same way.
Status ScanSnapshotTables(std::string_view module, std::string_view home_pool, int chunk_rows, size_t chunk_bytes,
                          Placeholder placeholder, const OpenCursor& open,
                          const std::function<Status(SnapshotChunk&&)>& sink);

}  // namespace tandem

// The topology: sites, pools, servers, back-ends, pairings and CMS placement, read
// from a TOML file and validated. Every later module (CMS, launcher, pool, backup,
// DR) reads the deployment from a Topology value. Values are immutable after
// parsing; safe to share between threads as const.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tandem {

struct SiteSpec {
  std::string name;
  int line = 0;  // where it is declared in the file, for messages
};

struct ServerSpec {
  std::string id;       // unique in the whole topology
  std::string address;  // IPv4 or IPv6 literal, or a host name
  uint16_t sip_port = 0;
  uint16_t admin_port = 0;
  int line = 0;
};

enum class BackendType { kSqlite, kPostgres };

struct BackendSpec {
  BackendType type = BackendType::kSqlite;
  std::string sqlite_path;          // kSqlite; relative paths are resolved against the data dir
  std::string postgres_dsn;         // kPostgres; libpq connection string
  std::string postgres_mirror_dsn;  // kPostgres; optional synchronous standby
  int line = 0;
};

enum class PoolEdition { kStandard, kEnterprise };

struct PoolSpec {
  std::string fqdn;  // unique
  std::string site;  // name of a SiteSpec
  PoolEdition edition = PoolEdition::kStandard;
  BackendSpec backend;
  std::vector<ServerSpec> servers;
  std::optional<std::string> backup_pool;  // FQDN of the paired pool, if paired
  int line = 0;
};

struct Topology {
  std::string sip_domain;  // e.g. "example.com"; the default digest realm
  // false only for benchmarks and labs: REGISTER is then accepted without digest
  // authentication (the user must still be provisioned).
  bool sip_authenticate = true;
  // Digest algorithms offered in challenges, in this order. RFC 8760 puts the most
  // preferred first, but common clients (sipp 3.6, baresip 1.0) answer only the first
  // challenge and fail on SHA-256, so the default leads with MD5 and still offers
  // SHA-256 to clients that look further; put "SHA-256" first where clients allow.
  std::vector<std::string> sip_digest_algorithms{"MD5", "SHA-256"};
  std::vector<SiteSpec> sites;
  std::vector<PoolSpec> pools;
  std::string cms_master_pool;  // FQDN of the pool whose store holds the CMS master
  std::chrono::milliseconds backup_sync_interval{2000};
  std::chrono::milliseconds failure_detection_interval{120000};
  std::chrono::milliseconds failback_interval{240000};
  // Pool membership ([pool]): each server renews its lease this often, and a lease
  // not renewed for lease_expiry lets the others take the server's users over.
  std::chrono::milliseconds lease_renew_interval{1000};
  std::chrono::milliseconds lease_expiry{3000};

  const PoolSpec* FindPool(std::string_view fqdn) const;
  // The server with this id, and (if `pool` is not null) the pool it belongs to.
  const ServerSpec* FindServer(std::string_view id, const PoolSpec** pool = nullptr) const;
  // The pool paired with `fqdn`, or null.
  const PoolSpec* BackupPoolOf(std::string_view fqdn) const;
};

enum class Severity { kError, kWarning };

struct Diagnostic {
  Severity severity = Severity::kError;
  std::string file;
  int line = 0;
  std::string message;

  // "FILE:LINE: message" for errors, "FILE:LINE: warning: message" for warnings.
  std::string ToString() const;
};

struct TopologyParseResult {
  std::optional<Topology> topology;  // set only when there are no errors
  std::vector<Diagnostic> diagnostics;  // all errors and warnings, in file order

  bool HasErrors() const;
};

// Parses and validates topology text. `file_name` is used only in diagnostics.
// Never throws; reports every problem it finds, not just the first.
TopologyParseResult ParseTopology(std::string_view text, std::string_view file_name);

// Reads and parses a file; an unreadable file is one diagnostic at line 0.
TopologyParseResult LoadTopologyFile(const std::string& path);

// A JSON view of the topology (for `tandem topology show --json`).
nlohmann::json TopologyToJson(const Topology& topology);

std::string_view EditionName(PoolEdition edition);
std::string_view BackendTypeName(BackendType type);

}  // namespace tandem

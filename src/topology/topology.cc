#include "topology/topology.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

// Parsing must never throw on untrusted input: with exceptions disabled, toml::parse
// returns a toml::parse_result instead. Debian's libtomlplusplus.so is built with
// exceptions (its pkg-config flags ask for it with TOML_HEADER_ONLY=0), so this file
// uses toml++ header-only in its noexcept flavour; toml++ keeps the two flavours in
// separate ABI namespaces, so other modules may still link the shared library.
#undef TOML_HEADER_ONLY
#undef TOML_SHARED_LIB
#undef TOML_EXCEPTIONS
#define TOML_HEADER_ONLY 1
#define TOML_SHARED_LIB 0
#define TOML_EXCEPTIONS 0
// toml++ 3.3 asserts a precondition in parse_key() that malformed table headers such
// as "[=x]" or "[[[a]]]" violate, aborting debug builds on untrusted input (fixed
// upstream in marzer/tomlplusplus#301). With the assertion compiled out, as in
// release builds, the parser goes on to report an ordinary parse error.
#undef TOML_ASSERT
#define TOML_ASSERT(expr) static_assert(true)
#include <toml++/toml.h>
static_assert(!TOML_EXCEPTIONS, "the topology parser needs toml++ without exceptions");

#include "common/file_util.h"

namespace tandem {

namespace {

constexpr int64_t kMinPort = 1;
constexpr int64_t kMaxPort = 65535;
// Timers are kept in milliseconds; a day is far beyond any sensible interval and
// keeps the conversion well inside the range of the representation.
constexpr double kMinTimerSeconds = 0.001;
constexpr double kMaxTimerSeconds = 86400.0;

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

// Pool FQDNs are DNS names, so they compare without regard to case.
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return AsciiLower(x) == AsciiLower(y); });
}

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
bool IsValidHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!IsAsciiAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// Server ids name files and directories in the data dir: keep them path-safe.
bool IsValidServerId(std::string_view id) {
  return !id.empty() && std::all_of(id.begin(), id.end(), [](char c) { return IsAsciiAlnum(c) || c == '-' || c == '_'; });
}

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

struct Pos {
  int line = 0;
  int column = 0;
};

Pos PosOf(const toml::source_region& region) {
  return Pos{static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
}

template <typename T>
struct Field {
  T value{};
  Pos pos;
};

// toml++ builds, walks and destroys nested tables recursively, so a key of tens of
// thousands of dotted parts overflows the stack. No topology needs more than a few
// levels, so the text is bounded before toml++ sees it: at most kMaxOpenBrackets
// '[' and '{' open at once, and at most kMaxDotsPerLine '.' per line outside strings
// and comments (keys and table headers cannot span lines). Nesting is then at most
// about kMaxOpenBrackets * kMaxDotsPerLine levels.
constexpr int kMaxOpenBrackets = 16;
constexpr int kMaxDotsPerLine = 16;

struct TextProblem {
  int line = 0;
  std::string message;
};

// Length of the run of `quote` characters starting at `i`.
size_t QuoteRun(std::string_view text, size_t i, char quote) {
  size_t n = 0;
  while (i + n < text.size() && text[i + n] == quote) ++n;
  return n;
}

std::optional<TextProblem> FindExcessiveNesting(std::string_view text) {
  enum class State { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
  State state = State::kCode;
  int line = 1;
  int open = 0;
  int dots = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      // Comments and single-line strings end at the end of the line (an unterminated
      // string is a syntax error toml++ reports).
      if (state == State::kComment || state == State::kBasic || state == State::kLiteral) state = State::kCode;
      continue;
    }
    switch (state) {
      case State::kComment:
        break;
      case State::kBasic:
      case State::kMultiBasic:
        if (c == '\\') {
          if (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // the escaped character
        } else if (c == '"') {
          if (state == State::kBasic) {
            state = State::kCode;
          } else {
            // Three or more quotes close a multi-line string (up to two belong to it).
            size_t run = QuoteRun(text, i, '"');
            if (run >= 3) state = State::kCode;
            i += run - 1;
          }
        }
        break;
      case State::kLiteral:
        if (c == '\'') state = State::kCode;
        break;
      case State::kMultiLiteral:
        if (c == '\'') {
          size_t run = QuoteRun(text, i, '\'');
          if (run >= 3) state = State::kCode;
          i += run - 1;
        }
        break;
      case State::kCode:
        if (c == '#') {
          state = State::kComment;
        } else if (c == '"' || c == '\'') {
          bool multi = QuoteRun(text, i, c) >= 3;
          if (multi) i += 2;
          state = c == '"' ? (multi ? State::kMultiBasic : State::kBasic)
                           : (multi ? State::kMultiLiteral : State::kLiteral);
        } else if (c == '[' || c == '{') {
          if (++open > kMaxOpenBrackets) {
            return TextProblem{line, fmt::format("more than {} nested brackets or braces", kMaxOpenBrackets)};
          }
        } else if (c == ']' || c == '}') {
          open = std::max(0, open - 1);
        } else if (c == '.') {
          if (++dots > kMaxDotsPerLine) {
            return TextProblem{line, fmt::format("more than {} '.' outside strings on one line", kMaxDotsPerLine)};
          }
        }
        break;
    }
  }
  return std::nullopt;
}

// " in server", " in [sip]", or " at top level" for the root table.
std::string InContext(std::string_view context) {
  return context.empty() ? std::string(" at top level") : fmt::format(" in {}", context);
}

// One endpoint a server listens on, for the address:port conflict check.
struct Endpoint {
  std::string key;       // normalized address: binary IP with family tag, or lower-case host name
  int family = 0;        // 4, 6, or 0 for a host name
  bool wildcard = false;  // 0.0.0.0 or ::
  std::string address;   // as written
  int64_t port = 0;
  std::string_view port_name;  // "sip_port" or "admin_port"
  size_t server = 0;           // index into the parser's server list
  Pos pos;                     // the port key
};

Endpoint MakeEndpoint(const std::string& address) {
  Endpoint e;
  e.address = address;
  unsigned char buf[16];
  if (inet_pton(AF_INET, address.c_str(), buf) == 1) {
    e.family = 4;
    e.key.assign("4:").append(reinterpret_cast<const char*>(buf), 4);
    e.wildcard = std::all_of(buf, buf + 4, [](unsigned char b) { return b == 0; });
  } else if (inet_pton(AF_INET6, address.c_str(), buf) == 1) {
    e.family = 6;
    e.key.assign("6:").append(reinterpret_cast<const char*>(buf), 16);
    e.wildcard = std::all_of(buf, buf + 16, [](unsigned char b) { return b == 0; });
  } else {
    e.key = "h:" + ToLower(address);
  }
  return e;
}

// Whether a wildcard endpoint (listening on every address of its family) overlaps
// `other`. Linux binds "::" dual-stack by default, so it also covers IPv4.
bool WildcardCovers(const Endpoint& wildcard, const Endpoint& other) {
  if (other.family == 0) return false;
  return wildcard.family == 6 || other.family == 4;
}

std::string FormatHostPort(const std::string& address, int64_t port) {
  if (address.find(':') != std::string::npos) return fmt::format("[{}]:{}", address, port);
  return fmt::format("{}:{}", address, port);
}

// What the parser learned about one [[pools.servers]] entry.
struct ServerInfo {
  ServerSpec spec;
  Pos pos;
  std::optional<Pos> id_pos;  // set when the id is valid
  std::optional<Field<int64_t>> sip_port;
  std::optional<Field<int64_t>> admin_port;
  bool address_ok = false;
};

// What the parser learned about one [[pools]] entry. Fields that failed to parse
// are absent, so that cross-checks do not pile more messages on one mistake.
struct PoolInfo {
  PoolSpec spec;
  Pos pos;
  std::optional<Field<std::string>> fqdn;
  std::optional<Field<std::string>> site;
  std::optional<Field<PoolEdition>> edition;
  std::optional<Field<std::string>> backup_pool;
  std::optional<Field<std::string>> sqlite_path;
  std::optional<size_t> server_count;  // absent when 'servers' has the wrong type
  std::vector<size_t> servers;         // indexes into the parser's server list
};

struct SiteInfo {
  std::optional<Field<std::string>> name;
};

// Parses and validates one topology document. Single use; not thread-safe.
class TopologyParser {
 public:
  explicit TopologyParser(std::string_view file_name) : file_name_(file_name) {}

  TopologyParseResult Parse(std::string_view text);

 private:
  struct Entry {
    Diagnostic diagnostic;
    int column = 0;
  };

  void Report(Severity severity, Pos pos, std::string message) {
    entries_.push_back(Entry{Diagnostic{severity, file_name_, pos.line, std::move(message)}, pos.column});
  }
  void AddError(Pos pos, std::string message) { Report(Severity::kError, pos, std::move(message)); }
  void AddWarning(Pos pos, std::string message) { Report(Severity::kWarning, pos, std::move(message)); }
  bool HasErrors() const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [](const Entry& e) { return e.diagnostic.severity == Severity::kError; });
  }

  void CheckKeys(const toml::table& table, std::initializer_list<std::string_view> allowed, std::string_view context);
  // The node under `key`, or null (reporting it when `required`).
  const toml::node* Lookup(const toml::table& table, std::string_view key, std::string_view context, Pos table_pos,
                           bool required);
  std::optional<Field<std::string>> GetString(const toml::table& table, std::string_view key,
                                              std::string_view context, Pos table_pos, bool required);
  std::optional<Field<int64_t>> GetPort(const toml::table& table, std::string_view key, std::string_view context,
                                        Pos table_pos);
  std::optional<std::chrono::milliseconds> GetSeconds(const toml::table& table, std::string_view key,
                                                      std::string_view context);
  const toml::table* GetTable(const toml::table& parent, std::string_view key, std::string_view context, Pos parent_pos,
                              bool required);
  // The tables of an array of tables (empty when absent or malformed).
  std::vector<const toml::table*> GetTables(const toml::table& parent, std::string_view key, std::string_view context,
                                            bool* ok);

  void ParseSections(const toml::table& root);
  void ParseDigestAlgorithms(const toml::node& node);
  void ParseLeaseTimers(const toml::table& table);
  void ParseSite(const toml::table& table);
  void ParsePool(const toml::table& table);
  void ParseBackend(const toml::table& table, PoolInfo& pool);
  void ParseServer(const toml::table& table, PoolInfo& pool);

  void CheckSites();
  void CheckPools();
  void CheckServerIds();
  void CheckEndpoints();
  void CheckPairing();

  std::string DescribePool(const PoolInfo& pool) const {
    return pool.fqdn ? fmt::format("'{}'", pool.fqdn->value) : fmt::format("at line {}", pool.pos.line);
  }
  std::string DescribeServer(const ServerInfo& server) const {
    return server.id_pos ? fmt::format("server '{}'", server.spec.id)
                         : fmt::format("the server at line {}", server.pos.line);
  }
  // The first pool defined with this FQDN, or null.
  const PoolInfo* FindPoolInfo(std::string_view fqdn) const {
    for (const PoolInfo& pool : pools_) {
      if (pool.fqdn && EqualsIgnoreCase(pool.fqdn->value, fqdn)) return &pool;
    }
    return nullptr;
  }

  std::string file_name_;
  std::vector<Entry> entries_;
  Topology topology_;
  std::optional<Field<std::string>> cms_master_pool_;
  std::vector<SiteInfo> sites_;
  std::vector<PoolInfo> pools_;
  std::vector<ServerInfo> servers_;
};

void TopologyParser::CheckKeys(const toml::table& table, std::initializer_list<std::string_view> allowed,
                               std::string_view context) {
  for (auto&& [key, node] : table) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
      AddError(PosOf(key.source()), fmt::format("unknown key '{}'{}", key.str(), InContext(context)));
    }
  }
}

const toml::node* TopologyParser::Lookup(const toml::table& table, std::string_view key, std::string_view context,
                                         Pos table_pos, bool required) {
  const toml::node* node = table.get(key);
  if (node == nullptr && required) {
    AddError(table_pos, fmt::format("missing required key '{}'{}", key, InContext(context)));
  }
  return node;
}

std::optional<Field<std::string>> TopologyParser::GetString(const toml::table& table, std::string_view key,
                                                            std::string_view context, Pos table_pos, bool required) {
  const toml::node* node = Lookup(table, key, context, table_pos, required);
  if (node == nullptr) return std::nullopt;
  Pos pos = PosOf(node->source());
  const toml::value<std::string>* value = node->as_string();
  if (value == nullptr) {
    AddError(pos, fmt::format("'{}'{} must be a string, not {}", key, InContext(context), TypeName(node->type())));
    return std::nullopt;
  }
  if (value->get().empty()) {
    AddError(pos, fmt::format("'{}'{} must not be empty", key, InContext(context)));
    return std::nullopt;
  }
  return Field<std::string>{value->get(), pos};
}

std::optional<Field<int64_t>> TopologyParser::GetPort(const toml::table& table, std::string_view key,
                                                      std::string_view context, Pos table_pos) {
  const toml::node* node = Lookup(table, key, context, table_pos, /*required=*/true);
  if (node == nullptr) return std::nullopt;
  Pos pos = PosOf(node->source());
  const toml::value<int64_t>* value = node->as_integer();
  if (value == nullptr) {
    AddError(pos, fmt::format("'{}'{} must be an integer, not {}", key, InContext(context), TypeName(node->type())));
    return std::nullopt;
  }
  int64_t port = value->get();
  if (port < kMinPort || port > kMaxPort) {
    AddError(pos, fmt::format("'{}'{} must be between {} and {}, not {}", key, InContext(context), kMinPort, kMaxPort,
                              port));
    return std::nullopt;
  }
  return Field<int64_t>{port, pos};
}

std::optional<std::chrono::milliseconds> TopologyParser::GetSeconds(const toml::table& table, std::string_view key,
                                                                    std::string_view context) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  Pos pos = PosOf(node->source());
  double seconds = 0;
  std::string text;
  if (const toml::value<int64_t>* i = node->as_integer()) {
    seconds = static_cast<double>(i->get());
    text = fmt::format("{}", i->get());
  } else if (const toml::value<double>* d = node->as_floating_point()) {
    seconds = d->get();
    text = fmt::format("{}", d->get());
  } else {
    AddError(pos, fmt::format("'{}'{} must be a number of seconds, not {}", key, InContext(context),
                              TypeName(node->type())));
    return std::nullopt;
  }
  if (std::isnan(seconds)) {
    AddError(pos, fmt::format("'{}'{} must be a number of seconds, not {}", key, InContext(context), text));
    return std::nullopt;
  }
  if (seconds <= 0) {
    AddError(pos, fmt::format("'{}'{} must be greater than 0, not {}", key, InContext(context), text));
    return std::nullopt;
  }
  if (seconds > kMaxTimerSeconds) {
    AddError(pos, fmt::format("'{}'{} must be at most {}, not {}", key, InContext(context), kMaxTimerSeconds, text));
    return std::nullopt;
  }
  if (seconds < kMinTimerSeconds) {
    AddError(pos, fmt::format("'{}'{} must be at least {}, not {}", key, InContext(context), kMinTimerSeconds, text));
    return std::nullopt;
  }
  return std::chrono::milliseconds(std::llround(seconds * 1000.0));
}

const toml::table* TopologyParser::GetTable(const toml::table& parent, std::string_view key, std::string_view context,
                                            Pos parent_pos, bool required) {
  const toml::node* node = parent.get(key);
  if (node == nullptr) {
    if (required) {
      if (context.empty()) {
        AddError(parent_pos, fmt::format("missing required section [{}]", key));
      } else {
        AddError(parent_pos, fmt::format("missing required key '{}'{}", key, InContext(context)));
      }
    }
    return nullptr;
  }
  const toml::table* table = node->as_table();
  if (table == nullptr) {
    AddError(PosOf(node->source()),
             fmt::format("'{}'{} must be a table, not {}", key, InContext(context), TypeName(node->type())));
  }
  return table;
}

std::vector<const toml::table*> TopologyParser::GetTables(const toml::table& parent, std::string_view key,
                                                          std::string_view context, bool* ok) {
  std::vector<const toml::table*> tables;
  *ok = true;
  const toml::node* node = parent.get(key);
  if (node == nullptr) return tables;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    AddError(PosOf(node->source()), fmt::format("'{}'{} must be an array of tables ([[{}]]), not {}", key,
                                                InContext(context), key, TypeName(node->type())));
    *ok = false;
    return tables;
  }
  for (const toml::node& element : *array) {
    if (const toml::table* table = element.as_table()) {
      tables.push_back(table);
    } else {
      AddError(PosOf(element.source()), fmt::format("'{}'{} must be an array of tables, but an entry is {}", key,
                                                    InContext(context), TypeName(element.type())));
      *ok = false;
    }
  }
  return tables;
}

void TopologyParser::ParseDigestAlgorithms(const toml::node& node) {
  Pos pos = PosOf(node.source());
  const toml::array* array = node.as_array();
  if (array == nullptr || array->empty()) {
    AddError(pos, "'digest_algorithms' in [sip] must be a non-empty list such as [\"SHA-256\", \"MD5\"]");
    return;
  }
  std::vector<std::string> algorithms;
  for (const toml::node& element : *array) {
    auto name = element.value<std::string>();
    if (!name || (*name != "SHA-256" && *name != "MD5")) {
      AddError(PosOf(element.source()), "'digest_algorithms' in [sip] may only hold \"SHA-256\" and \"MD5\"");
      return;
    }
    if (std::find(algorithms.begin(), algorithms.end(), *name) != algorithms.end()) {
      AddError(PosOf(element.source()), fmt::format("'digest_algorithms' in [sip] names {} twice", *name));
      return;
    }
    algorithms.push_back(*name);
  }
  topology_.sip_digest_algorithms = algorithms;
}

void TopologyParser::ParseSections(const toml::table& root) {
  Pos root_pos{1, 1};
  CheckKeys(root, {"sip", "cms", "backup", "resiliency", "pool", "sites", "pools"}, "");

  if (const toml::table* sip = GetTable(root, "sip", "", root_pos, /*required=*/true)) {
    Pos pos = PosOf(sip->source());
    CheckKeys(*sip, {"domain", "authenticate", "digest_algorithms"}, "[sip]");
    if (const toml::node* algorithms = sip->get("digest_algorithms")) {
      ParseDigestAlgorithms(*algorithms);
    }
    if (const toml::node* authenticate = sip->get("authenticate")) {
      if (auto value = authenticate->value<bool>(); value && authenticate->is_boolean()) {
        topology_.sip_authenticate = *value;
      } else {
        AddError(PosOf(authenticate->source()),
                 fmt::format("'authenticate' in [sip] must be true or false, not {}", TypeName(authenticate->type())));
      }
    }
    if (auto domain = GetString(*sip, "domain", "[sip]", pos, /*required=*/true)) {
      if (IsValidHostName(domain->value)) {
        topology_.sip_domain = domain->value;
      } else {
        AddError(domain->pos, fmt::format("sip domain '{}' is not a valid domain name", domain->value));
      }
    }
  }

  if (const toml::table* cms = GetTable(root, "cms", "", root_pos, /*required=*/true)) {
    CheckKeys(*cms, {"master_pool"}, "[cms]");
    cms_master_pool_ = GetString(*cms, "master_pool", "[cms]", PosOf(cms->source()), /*required=*/true);
  }

  if (const toml::table* backup = GetTable(root, "backup", "", root_pos, /*required=*/false)) {
    CheckKeys(*backup, {"sync_interval_seconds"}, "[backup]");
    if (auto interval = GetSeconds(*backup, "sync_interval_seconds", "[backup]")) {
      topology_.backup_sync_interval = *interval;
    }
  }

  if (const toml::table* resiliency = GetTable(root, "resiliency", "", root_pos, /*required=*/false)) {
    CheckKeys(*resiliency, {"failure_detection_seconds", "failback_seconds"}, "[resiliency]");
    if (auto detection = GetSeconds(*resiliency, "failure_detection_seconds", "[resiliency]")) {
      topology_.failure_detection_interval = *detection;
    }
    if (auto failback = GetSeconds(*resiliency, "failback_seconds", "[resiliency]")) {
      topology_.failback_interval = *failback;
    }
  }

  if (const toml::table* pool = GetTable(root, "pool", "", root_pos, /*required=*/false)) ParseLeaseTimers(*pool);

  bool ok = true;
  for (const toml::table* site : GetTables(root, "sites", "", &ok)) ParseSite(*site);
  for (const toml::table* pool : GetTables(root, "pools", "", &ok)) ParsePool(*pool);
}

void TopologyParser::ParseLeaseTimers(const toml::table& table) {
  CheckKeys(table, {"lease_renew_seconds", "lease_expiry_seconds"}, "[pool]");
  if (auto renew = GetSeconds(table, "lease_renew_seconds", "[pool]")) topology_.lease_renew_interval = *renew;
  if (auto expiry = GetSeconds(table, "lease_expiry_seconds", "[pool]")) topology_.lease_expiry = *expiry;
  // One lost renewal must not cost a server its users: the lease outlives two renewals.
  if (topology_.lease_expiry < 2 * topology_.lease_renew_interval) {
    const toml::node* blamed = table.get("lease_expiry_seconds");
    if (blamed == nullptr) blamed = table.get("lease_renew_seconds");
    AddError(PosOf(blamed->source()),
             fmt::format("'lease_expiry_seconds' in [pool] ({} s) must be at least twice 'lease_renew_seconds' ({} s)",
                         topology_.lease_expiry.count() / 1000.0, topology_.lease_renew_interval.count() / 1000.0));
  }
}

void TopologyParser::ParseSite(const toml::table& table) {
  Pos pos = PosOf(table.source());
  CheckKeys(table, {"name"}, "site");
  SiteInfo site;
  site.name = GetString(table, "name", "site", pos, /*required=*/true);
  sites_.push_back(std::move(site));
}

void TopologyParser::ParsePool(const toml::table& table) {
  PoolInfo pool;
  pool.pos = PosOf(table.source());
  pool.spec.line = pool.pos.line;
  CheckKeys(table, {"fqdn", "site", "edition", "backup_pool", "backend", "servers"}, "pool");

  pool.fqdn = GetString(table, "fqdn", "pool", pool.pos, /*required=*/true);
  if (pool.fqdn && !IsValidHostName(pool.fqdn->value)) {
    AddError(pool.fqdn->pos, fmt::format("pool fqdn '{}' is not a valid host name", pool.fqdn->value));
    pool.fqdn.reset();
  }
  pool.site = GetString(table, "site", "pool", pool.pos, /*required=*/true);
  if (auto edition = GetString(table, "edition", "pool", pool.pos, /*required=*/true)) {
    if (edition->value == "standard") {
      pool.edition = Field<PoolEdition>{PoolEdition::kStandard, edition->pos};
    } else if (edition->value == "enterprise") {
      pool.edition = Field<PoolEdition>{PoolEdition::kEnterprise, edition->pos};
    } else {
      AddError(edition->pos,
               fmt::format("unknown edition '{}'; expected 'standard' or 'enterprise'", edition->value));
    }
  }
  pool.backup_pool = GetString(table, "backup_pool", "pool", pool.pos, /*required=*/false);
  if (const toml::table* backend = GetTable(table, "backend", "pool", pool.pos, /*required=*/true)) {
    ParseBackend(*backend, pool);
  }

  bool servers_ok = true;
  std::vector<const toml::table*> servers = GetTables(table, "servers", "pool", &servers_ok);
  if (servers_ok) pool.server_count = servers.size();
  pools_.push_back(std::move(pool));
  // Servers are parsed after the pool is stored so their indexes can be recorded on it.
  for (const toml::table* server : servers) ParseServer(*server, pools_.back());
}

void TopologyParser::ParseBackend(const toml::table& table, PoolInfo& pool) {
  Pos pos = PosOf(table.source());
  BackendSpec& backend = pool.spec.backend;
  backend.line = pos.line;
  auto type = GetString(table, "type", "backend", pos, /*required=*/true);
  if (!type) {
    CheckKeys(table, {"type", "path", "dsn", "mirror_dsn"}, "backend");
    return;
  }
  if (type->value == "sqlite") {
    backend.type = BackendType::kSqlite;
    CheckKeys(table, {"type", "path"}, "sqlite backend");
    pool.sqlite_path = GetString(table, "path", "sqlite backend", pos, /*required=*/true);
    if (pool.sqlite_path) backend.sqlite_path = pool.sqlite_path->value;
  } else if (type->value == "postgres") {
    backend.type = BackendType::kPostgres;
    CheckKeys(table, {"type", "dsn", "mirror_dsn"}, "postgres backend");
    if (auto dsn = GetString(table, "dsn", "postgres backend", pos, /*required=*/true)) {
      backend.postgres_dsn = dsn->value;
    }
    if (auto mirror = GetString(table, "mirror_dsn", "postgres backend", pos, /*required=*/false)) {
      backend.postgres_mirror_dsn = mirror->value;
    }
  } else {
    AddError(type->pos, fmt::format("unknown backend type '{}'; expected 'sqlite' or 'postgres'", type->value));
    CheckKeys(table, {"type", "path", "dsn", "mirror_dsn"}, "backend");
  }
}

void TopologyParser::ParseServer(const toml::table& table, PoolInfo& pool) {
  ServerInfo server;
  server.pos = PosOf(table.source());
  server.spec.line = server.pos.line;
  CheckKeys(table, {"id", "address", "sip_port", "admin_port"}, "server");

  if (auto id = GetString(table, "id", "server", server.pos, /*required=*/true)) {
    if (IsValidServerId(id->value)) {
      server.spec.id = id->value;
      server.id_pos = id->pos;
    } else {
      AddError(id->pos, fmt::format("server id '{}' may contain only letters, digits, '-' and '_'", id->value));
    }
  }
  if (auto address = GetString(table, "address", "server", server.pos, /*required=*/true)) {
    unsigned char buf[16];
    bool is_ip = inet_pton(AF_INET, address->value.c_str(), buf) == 1 ||
                 inet_pton(AF_INET6, address->value.c_str(), buf) == 1;
    if (is_ip || IsValidHostName(address->value)) {
      server.spec.address = address->value;
      server.address_ok = true;
    } else {
      AddError(address->pos,
               fmt::format("server address '{}' is neither an IP address nor a host name", address->value));
    }
  }
  server.sip_port = GetPort(table, "sip_port", "server", server.pos);
  server.admin_port = GetPort(table, "admin_port", "server", server.pos);
  if (server.sip_port) server.spec.sip_port = static_cast<uint16_t>(server.sip_port->value);
  if (server.admin_port) server.spec.admin_port = static_cast<uint16_t>(server.admin_port->value);

  pool.servers.push_back(servers_.size());
  servers_.push_back(std::move(server));
}

void TopologyParser::CheckSites() {
  std::map<std::string, Pos, std::less<>> seen;
  for (const SiteInfo& site : sites_) {
    if (!site.name) continue;
    auto [it, inserted] = seen.emplace(site.name->value, site.name->pos);
    if (!inserted) {
      AddError(site.name->pos,
               fmt::format("site '{}' is already defined at line {}", site.name->value, it->second.line));
    }
  }
}

void TopologyParser::CheckPools() {
  std::map<std::string, Pos> seen;  // lower-case FQDN -> where it was first defined
  std::map<std::string, const PoolInfo*, std::less<>> sqlite_paths;
  for (const PoolInfo& pool : pools_) {
    if (pool.sqlite_path) {
      auto [it, inserted] = sqlite_paths.emplace(pool.sqlite_path->value, &pool);
      if (!inserted) {
        AddError(pool.sqlite_path->pos, fmt::format("sqlite path '{}' is already used by pool {} at line {}",
                                                    pool.sqlite_path->value, DescribePool(*it->second),
                                                    it->second->sqlite_path->pos.line));
      }
    }
    if (pool.fqdn) {
      auto [it, inserted] = seen.emplace(ToLower(pool.fqdn->value), pool.fqdn->pos);
      if (!inserted) {
        AddError(pool.fqdn->pos,
                 fmt::format("pool '{}' is already defined at line {}", pool.fqdn->value, it->second.line));
      }
    }
    if (pool.site) {
      bool defined = std::any_of(sites_.begin(), sites_.end(), [&](const SiteInfo& site) {
        return site.name && site.name->value == pool.site->value;
      });
      if (!defined) {
        AddError(pool.site->pos, fmt::format("pool {} is in site '{}', which is not defined", DescribePool(pool),
                                             pool.site->value));
      }
    }
    if (pool.server_count) {
      size_t count = *pool.server_count;
      if (count == 0) {
        AddError(pool.pos, fmt::format("pool {} has no servers", DescribePool(pool)));
      } else if (pool.edition && pool.edition->value == PoolEdition::kStandard && count != 1) {
        AddError(pool.edition->pos, fmt::format("standard pool {} must have exactly 1 server, not {}",
                                                DescribePool(pool), count));
      } else if (pool.edition && pool.edition->value == PoolEdition::kEnterprise && count < 2) {
        AddError(pool.edition->pos, fmt::format("enterprise pool {} must have at least 2 servers, not {}",
                                                DescribePool(pool), count));
      } else if (pool.edition && pool.edition->value == PoolEdition::kEnterprise && count == 2) {
        AddWarning(pool.edition->pos, fmt::format("enterprise pool {} has only 2 servers; at least 3 are recommended",
                                                  DescribePool(pool)));
      }
    }
  }
  if (cms_master_pool_ && FindPoolInfo(cms_master_pool_->value) == nullptr) {
    AddError(cms_master_pool_->pos, fmt::format("cms master pool '{}' is not defined", cms_master_pool_->value));
  }
}

void TopologyParser::CheckServerIds() {
  std::map<std::string, Pos, std::less<>> seen;
  for (const ServerInfo& server : servers_) {
    if (!server.id_pos) continue;
    auto [it, inserted] = seen.emplace(server.spec.id, *server.id_pos);
    if (!inserted) {
      AddError(*server.id_pos,
               fmt::format("server id '{}' is already used at line {}", server.spec.id, it->second.line));
    }
  }
}

void TopologyParser::CheckEndpoints() {
  // Per port: endpoints seen so far, by normalized address, plus the first wildcard of
  // each family. Keeps the check near-linear even for large topologies.
  struct PortState {
    std::map<std::string, size_t> by_key;
    std::vector<size_t> all;
    std::optional<size_t> wildcard4;
    std::optional<size_t> wildcard6;
  };
  std::vector<Endpoint> endpoints;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const ServerInfo& server = servers_[i];
    if (!server.address_ok) continue;
    for (const auto& [port, name] : {std::pair{&server.sip_port, std::string_view("sip_port")},
                                     std::pair{&server.admin_port, std::string_view("admin_port")}}) {
      if (!*port) continue;
      Endpoint e = MakeEndpoint(server.spec.address);
      e.port = (*port)->value;
      e.port_name = name;
      e.server = i;
      e.pos = (*port)->pos;
      endpoints.push_back(std::move(e));
    }
  }

  std::map<int64_t, PortState> ports;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const Endpoint& e = endpoints[i];
    PortState& state = ports[e.port];
    std::optional<size_t> conflict;
    if (auto it = state.by_key.find(e.key); it != state.by_key.end()) {
      conflict = it->second;
    } else if (e.family != 0 && state.wildcard6) {
      conflict = state.wildcard6;
    } else if (e.family == 4 && state.wildcard4) {
      conflict = state.wildcard4;
    } else if (e.wildcard) {
      for (size_t j : state.all) {
        if (WildcardCovers(e, endpoints[j])) {
          conflict = j;
          break;
        }
      }
    }
    if (conflict) {
      const Endpoint& first = endpoints[*conflict];
      if (first.server == e.server) {
        AddError(e.pos, fmt::format("{} uses port {} for both sip_port and admin_port",
                                    DescribeServer(servers_[e.server]), e.port));
      } else {
        AddError(e.pos, fmt::format("{} is already used by the {} of {} at line {}", FormatHostPort(e.address, e.port),
                                    first.port_name, DescribeServer(servers_[first.server]), first.pos.line));
      }
    }
    state.by_key.emplace(e.key, i);
    state.all.push_back(i);
    if (e.wildcard && e.family == 4 && !state.wildcard4) state.wildcard4 = i;
    if (e.wildcard && e.family == 6 && !state.wildcard6) state.wildcard6 = i;
  }
}

void TopologyParser::CheckPairing() {
  for (size_t i = 0; i < pools_.size(); ++i) {
    const PoolInfo& pool = pools_[i];
    if (!pool.backup_pool) continue;
    const Field<std::string>& backup = *pool.backup_pool;
    std::string name = DescribePool(pool);
    if (pool.fqdn && EqualsIgnoreCase(pool.fqdn->value, backup.value)) {
      AddError(backup.pos, fmt::format("pool {} is paired with itself", name));
      continue;
    }
    const PoolInfo* partner = FindPoolInfo(backup.value);
    if (partner == nullptr) {
      AddError(backup.pos, fmt::format("pool {} is paired with '{}', which is not defined", name, backup.value));
      continue;
    }
    if (!pool.fqdn) continue;  // the partner cannot name a pool without a valid FQDN
    // A self-paired partner is reported at its own backup_pool line.
    if (partner->backup_pool && EqualsIgnoreCase(partner->backup_pool->value, partner->fqdn->value)) continue;
    bool mutual = partner->backup_pool && EqualsIgnoreCase(partner->backup_pool->value, pool.fqdn->value);
    if (mutual) {
      // Warn once per pair, at the pool declared second.
      if (partner < &pool && partner->site && pool.site && partner->site->value == pool.site->value) {
        AddWarning(backup.pos, fmt::format("paired pools '{}' and '{}' are in the same site '{}', so one site "
                                           "outage takes down both",
                                           partner->fqdn->value, pool.fqdn->value, pool.site->value));
      }
      continue;
    }
    // Not mutual. If an earlier pool already names the same partner, say so: that is
    // the pool the partner can be paired with, not this one.
    const PoolInfo* earlier = nullptr;
    for (size_t j = 0; j < i; ++j) {
      const PoolInfo& other = pools_[j];
      if (&other != partner && other.fqdn && other.backup_pool &&
          EqualsIgnoreCase(other.backup_pool->value, backup.value) &&
          !EqualsIgnoreCase(other.fqdn->value, pool.fqdn->value)) {
        earlier = &other;
        break;
      }
    }
    if (earlier != nullptr) {
      AddError(backup.pos, fmt::format("pool {} is paired with '{}', but '{}' already names '{}' as its backup_pool "
                                       "at line {}",
                                       name, backup.value, earlier->fqdn->value, backup.value,
                                       earlier->backup_pool->pos.line));
    } else if (!partner->backup_pool) {
      AddError(backup.pos, fmt::format("pool {} is paired with '{}', but '{}' has no backup_pool", name, backup.value,
                                       partner->fqdn->value));
    } else {
      AddError(backup.pos, fmt::format("pool {} is paired with '{}', but '{}' is paired with '{}'", name,
                                       backup.value, partner->fqdn->value, partner->backup_pool->value));
    }
  }
}

TopologyParseResult TopologyParser::Parse(std::string_view text) {
  TopologyParseResult result;
  if (std::optional<TextProblem> problem = FindExcessiveNesting(text)) {
    result.diagnostics.push_back(
        Diagnostic{Severity::kError, file_name_, problem->line, fmt::format("syntax error: {}", problem->message)});
    return result;
  }
  toml::parse_result parsed = toml::parse(text, std::string_view(file_name_));
  if (!parsed) {
    const toml::parse_error& error = parsed.error();
    std::string description(error.description());
    if (!description.empty()) description[0] = AsciiLower(description[0]);
    result.diagnostics.push_back(Diagnostic{Severity::kError, file_name_, static_cast<int>(error.source().begin.line),
                                            fmt::format("syntax error: {}", description)});
    return result;
  }

  ParseSections(parsed.table());
  CheckSites();
  CheckPools();
  CheckServerIds();
  CheckEndpoints();
  CheckPairing();

  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.diagnostic.line, a.column) < std::pair(b.diagnostic.line, b.column);
  });
  bool has_errors = HasErrors();
  for (Entry& entry : entries_) result.diagnostics.push_back(std::move(entry.diagnostic));
  if (has_errors) return result;

  // Every required field parsed (or an error would have been reported): assemble.
  TANDEM_CHECK(cms_master_pool_.has_value());
  topology_.cms_master_pool = cms_master_pool_->value;
  for (const SiteInfo& site : sites_) topology_.sites.push_back(SiteSpec{site.name->value, site.name->pos.line});
  for (PoolInfo& pool : pools_) {
    pool.spec.fqdn = pool.fqdn->value;
    pool.spec.site = pool.site->value;
    pool.spec.edition = pool.edition->value;
    if (pool.backup_pool) pool.spec.backup_pool = pool.backup_pool->value;
    for (size_t index : pool.servers) pool.spec.servers.push_back(servers_[index].spec);
    topology_.pools.push_back(std::move(pool.spec));
  }
  result.topology = std::move(topology_);
  return result;
}

}  // namespace

const PoolSpec* Topology::FindPool(std::string_view fqdn) const {
  for (const PoolSpec& pool : pools) {
    if (EqualsIgnoreCase(pool.fqdn, fqdn)) return &pool;
  }
  return nullptr;
}

const ServerSpec* Topology::FindServer(std::string_view id, const PoolSpec** pool) const {
  for (const PoolSpec& candidate : pools) {
    for (const ServerSpec& server : candidate.servers) {
      if (server.id == id) {
        if (pool != nullptr) *pool = &candidate;
        return &server;
      }
    }
  }
  if (pool != nullptr) *pool = nullptr;
  return nullptr;
}

const PoolSpec* Topology::BackupPoolOf(std::string_view fqdn) const {
  const PoolSpec* pool = FindPool(fqdn);
  if (pool == nullptr || !pool->backup_pool) return nullptr;
  return FindPool(*pool->backup_pool);
}

std::string Diagnostic::ToString() const {
  if (severity == Severity::kWarning) return fmt::format("{}:{}: warning: {}", file, line, message);
  return fmt::format("{}:{}: {}", file, line, message);
}

bool TopologyParseResult::HasErrors() const {
  return std::any_of(diagnostics.begin(), diagnostics.end(),
                     [](const Diagnostic& d) { return d.severity == Severity::kError; });
}

TopologyParseResult ParseTopology(std::string_view text, std::string_view file_name) {
  return TopologyParser(file_name).Parse(text);
}

TopologyParseResult LoadTopologyFile(const std::string& path) {
  Result<std::string> contents = ReadFile(path);
  if (!contents) {
    // ReadFile's messages start with the path, which the diagnostic already names.
    std::string_view reason = contents.error().message;
    if (reason.starts_with(path) && reason.substr(path.size()).starts_with(": ")) {
      reason.remove_prefix(path.size() + 2);
    }
    TopologyParseResult result;
    result.diagnostics.push_back(Diagnostic{Severity::kError, path, 0, fmt::format("cannot read file: {}", reason)});
    return result;
  }
  return ParseTopology(*contents, path);
}

std::string_view EditionName(PoolEdition edition) {
  switch (edition) {
    case PoolEdition::kStandard: return "standard";
    case PoolEdition::kEnterprise: return "enterprise";
  }
  return "unknown";
}

std::string_view BackendTypeName(BackendType type) {
  switch (type) {
    case BackendType::kSqlite: return "sqlite";
    case BackendType::kPostgres: return "postgres";
  }
  return "unknown";
}

nlohmann::json TopologyToJson(const Topology& topology) {
  auto seconds = [](std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; };
  nlohmann::json sites = nlohmann::json::array();
  for (const SiteSpec& site : topology.sites) sites.push_back({{"name", site.name}});
  nlohmann::json pools = nlohmann::json::array();
  for (const PoolSpec& pool : topology.pools) {
    nlohmann::json backend = {{"type", BackendTypeName(pool.backend.type)}};
    if (pool.backend.type == BackendType::kSqlite) {
      backend["path"] = pool.backend.sqlite_path;
    } else {
      backend["dsn"] = pool.backend.postgres_dsn;
      backend["mirror_dsn"] =
          pool.backend.postgres_mirror_dsn.empty() ? nlohmann::json(nullptr) : nlohmann::json(pool.backend.postgres_mirror_dsn);
    }
    nlohmann::json servers = nlohmann::json::array();
    for (const ServerSpec& server : pool.servers) {
      servers.push_back({{"id", server.id},
                         {"address", server.address},
                         {"sip_port", server.sip_port},
                         {"admin_port", server.admin_port}});
    }
    pools.push_back({{"fqdn", pool.fqdn},
                     {"site", pool.site},
                     {"edition", EditionName(pool.edition)},
                     {"backup_pool", pool.backup_pool ? nlohmann::json(*pool.backup_pool) : nlohmann::json(nullptr)},
                     {"backend", std::move(backend)},
                     {"servers", std::move(servers)}});
  }
  return {{"sip_domain", topology.sip_domain},
          {"sip_authenticate", topology.sip_authenticate},
          {"sip_digest_algorithms", topology.sip_digest_algorithms},
          {"cms_master_pool", topology.cms_master_pool},
          {"backup_sync_interval_seconds", seconds(topology.backup_sync_interval)},
          {"failure_detection_seconds", seconds(topology.failure_detection_interval)},
          {"failback_seconds", seconds(topology.failback_interval)},
          {"lease_renew_seconds", seconds(topology.lease_renew_interval)},
          {"lease_expiry_seconds", seconds(topology.lease_expiry)},
          {"sites", std::move(sites)},
          {"pools", std::move(pools)}};
}

}  // namespace tandem

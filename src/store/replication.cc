#include "store/replication.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "store/store_checks.h"

namespace tandem {

using nlohmann::json;

std::string CmsVersionChangeKey(int64_t version) { return fmt::format("version:{:012d}", version); }

std::string CmsVersionPayloadJson(const CmsVersionRecord& record) {
  return Dump(json{{"version", record.version},
                   {"published_at_ms", record.published_at_ms},
                   {"document", record.document}});
}

namespace {

constexpr std::string_view kUser = "user";
constexpr std::string_view kConference = "conference";
constexpr std::string_view kCms = "cms";

// Column lists match the tables of migrations.cc; the types string says how to read each.
constexpr ReplicatedTable kUserTables[] = {
    {RowKind::kUser, kUser, "users",
     "uri, username, domain, home_pool, ha1_md5, ha1_sha256, ha1_md5_full, ha1_sha256_full, created_at_ms",
     "tttttttti", 1, true, true},
    {RowKind::kContact, kUser, "contacts", "owner, contact, display_name, groups, home_pool, updated_at_ms", "ttttti",
     2, true, true},
    {RowKind::kGroup, kUser, "contact_groups", "owner, name, home_pool, created_at_ms", "ttti", 2, true, true},
    {RowKind::kNote, kUser, "presence_notes", "owner, note, home_pool, updated_at_ms", "ttti", 1, true, true},
    {RowKind::kPrivacy, kUser, "privacy_settings", "owner, policy, allow_list, block_list, home_pool, updated_at_ms",
     "ttttti", 1, true, true},
};
constexpr ReplicatedTable kConferenceTables[] = {
    {RowKind::kMeeting, kConference, "meetings",
     "id, organizer, home_pool, subject, start_ms, end_ms, attendees, pin, lobby, state, created_ms, updated_ms",
     "ttttiittttii", 1, true, false},
    {RowKind::kContent, kConference, "meeting_content",
     "meeting_id, name, size, sha256, home_pool, uploaded_ms, content", "ttittib", 2, true, false},
};
constexpr ReplicatedTable kCmsTables[] = {
    {RowKind::kCmsVersion, kCms, "cms_versions", "version, published_at_ms, document", "iit", 1, false, false},
};

const ReplicatedTable& TableOf(RowKind kind) {
  for (auto tables : {std::span<const ReplicatedTable>(kUserTables), std::span<const ReplicatedTable>(kConferenceTables),
                      std::span<const ReplicatedTable>(kCmsTables)}) {
    for (const ReplicatedTable& table : tables) {
      if (table.kind == kind) return table;
    }
  }
  TANDEM_CHECK(false && "a row kind without a table");
  return kCmsTables[0];
}

std::vector<std::string_view> ColumnNames(const ReplicatedTable& table) {
  std::vector<std::string_view> names;
  std::string_view rest = table.columns;
  while (!rest.empty()) {
    size_t comma = rest.find(", ");
    names.push_back(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 2);
  }
  return names;
}

// "(p1, p2, ...)" for `count` parameters from `first`.
std::string Tuple(int first, int count, Placeholder placeholder) {
  std::string out = "(";
  for (int i = 0; i < count; ++i) out += (i ? ", " : "") + placeholder(first + i);
  return out + ")";
}

// Why a scan of an owner-keyed table may bound its first column (the owner) by the
// key range. The key is owner + "#..." (or the owner alone) and owners never hold
// '#'. Let X be a bound's part before its first '#'.
//  - key >= key_from implies owner >= X cut before its first byte below '#'.
//  - key < key_to implies owner <= X + "#".
std::string LowerOwnerBound(std::string_view key_from) {
  std::string_view owner = key_from.substr(0, key_from.find('#'));
  auto below = std::find_if(owner.begin(), owner.end(), [](char c) { return static_cast<unsigned char>(c) < '#'; });
  return std::string(owner.begin(), below);
}
std::string UpperOwnerBound(std::string_view key_to) {
  return std::string(key_to.substr(0, key_to.find('#'))) + "#";
}

}  // namespace

Result<std::span<const ReplicatedTable>> ReplicatedTables(std::string_view module) {
  if (module == kUser) return std::span<const ReplicatedTable>(kUserTables);
  if (module == kConference) return std::span<const ReplicatedTable>(kConferenceTables);
  if (module == kCms) return std::span<const ReplicatedTable>(kCmsTables);
  return MakeError(ErrorCode::kInvalidArgument,
                   fmt::format("unknown module '{}' (expected user, conference or cms)", module));
}

SqlQuery ScanQuery(const ReplicatedTable& table, std::string_view home_pool, std::string_view key_from,
                   std::string_view key_to, Placeholder placeholder) {
  std::vector<std::string_view> names = ColumnNames(table);
  SqlQuery query;
  std::string where;
  auto add = [&](std::string condition, std::string value) {
    where += fmt::format("{}{} {}", where.empty() ? " WHERE " : " AND ", condition,
                         placeholder(static_cast<int>(query.params.size()) + 1));
    query.params.emplace_back(std::in_place_type<std::string>, std::move(value));
  };
  if (table.homed) add("home_pool =", std::string(home_pool));
  if (table.owner_keyed && !key_from.empty()) add(fmt::format("{} >=", names[0]), LowerOwnerBound(key_from));
  if (table.owner_keyed && !key_to.empty()) add(fmt::format("{} <=", names[0]), UpperOwnerBound(key_to));
  std::vector<std::string_view> key(names.begin(), names.begin() + table.key_columns);
  query.sql = fmt::format("SELECT {} FROM {}{} ORDER BY {}", table.columns, table.name, where, fmt::join(key, ", "));
  return query;
}

namespace {

// What follows an INSERT of `table`'s columns: the row with the same primary key is
// replaced (CMS versions: kept, a version never changes).
std::string OnConflictClause(const ReplicatedTable& table) {
  std::vector<std::string_view> names = ColumnNames(table);
  std::vector<std::string_view> key(names.begin(), names.begin() + table.key_columns);
  if (!table.homed) return fmt::format(" ON CONFLICT ({}) DO NOTHING", fmt::join(key, ", "));
  std::vector<std::string> sets;
  for (size_t i = table.key_columns; i < names.size(); ++i) sets.push_back(fmt::format("{0} = excluded.{0}", names[i]));
  return fmt::format(" ON CONFLICT ({}) DO UPDATE SET {}", fmt::join(key, ", "), fmt::join(sets, ", "));
}

}  // namespace

std::string UpsertSql(const ReplicatedTable& table, int rows, Placeholder placeholder) {
  int width = static_cast<int>(ColumnNames(table).size());
  std::string sql = fmt::format("INSERT INTO {}({}) VALUES ", table.name, table.columns);
  for (int row = 0; row < rows; ++row) sql += (row ? ", " : "") + Tuple(row * width + 1, width, placeholder);
  return sql + OnConflictClause(table);
}

std::string UpsertFromSql(const ReplicatedTable& table, std::string_view source) {
  return fmt::format("INSERT INTO {0}({1}) SELECT {1} FROM {2}{3}", table.name, table.columns, source,
                     OnConflictClause(table));
}

std::string DeleteSql(const ReplicatedTable& table, Placeholder placeholder) {
  std::vector<std::string_view> names = ColumnNames(table);
  std::vector<std::string> conditions;
  for (int i = 0; i < table.key_columns; ++i) conditions.push_back(fmt::format("{} = {}", names[i], placeholder(i + 1)));
  return fmt::format("DELETE FROM {} WHERE {}", table.name, fmt::join(conditions, " AND "));
}

std::string DeletePoolSql(const ReplicatedTable& table, Placeholder placeholder) {
  TANDEM_CHECK(table.homed);
  return fmt::format("DELETE FROM {} WHERE home_pool = {}", table.name, placeholder(1));
}

// ---- Rows to keys and payloads -----------------------------------------------------

namespace {

// Typed access to a row read by a back-end (read by the table's types string, so a
// mismatch is a broken invariant).
class Columns {
 public:
  explicit Columns(const SqlRow& row) : row_(row) {}
  const std::string& Text(size_t i) const { return std::get<std::string>(row_.at(i)); }
  int64_t Int(size_t i) const { return std::get<int64_t>(row_.at(i)); }
  const std::string& Bytes(size_t i) const { return std::get<SqlBytes>(row_.at(i)).bytes; }

 private:
  const SqlRow& row_;
};

// The change-log key of a row of `table` (store.h).
std::string KeyOfRow(const ReplicatedTable& table, const SqlRow& row) {
  Columns c(row);
  switch (table.kind) {
    case RowKind::kUser: return c.Text(0);
    case RowKind::kContact: return ContactChangeKey(c.Text(0), c.Text(1));
    case RowKind::kGroup: return ContactGroupChangeKey(c.Text(0), c.Text(1));
    case RowKind::kNote: return PresenceNoteChangeKey(c.Text(0));
    case RowKind::kPrivacy: return PrivacyChangeKey(c.Text(0));
    case RowKind::kMeeting: return MeetingChangeKey(c.Text(0));
    case RowKind::kContent: return ContentChangeKey(c.Text(0), c.Text(1));
    case RowKind::kCmsVersion: return CmsVersionChangeKey(c.Int(0));
  }
  TANDEM_CHECK(false && "a row kind without a key");
  return {};
}

// Which column holds the home pool; -1 for a table that is not homed.
int HomePoolColumn(const ReplicatedTable& table) {
  if (!table.homed) return -1;
  std::vector<std::string_view> names = ColumnNames(table);
  auto it = std::find(names.begin(), names.end(), "home_pool");
  TANDEM_CHECK(it != names.end());
  return static_cast<int>(it - names.begin());
}

// A scanned row of `table` as ScanRows gives it; `key` is KeyOfRow's.
Result<ReplicatedRow> ReplicatedRowOf(const ReplicatedTable& table, const SqlRow& row, const std::string& key) {
  Columns c(row);
  switch (table.kind) {
    case RowKind::kUser: {
      UserRecord user{c.Text(0), c.Text(1), c.Text(2), c.Text(3), c.Text(4),
                      c.Text(5), c.Text(6), c.Text(7), c.Int(8)};
      return ReplicatedRow{key, user.home_pool, UserPayloadJson(user)};
    }
    case RowKind::kContact: {
      ContactRecord contact{c.Text(0), c.Text(1), c.Text(2), {}, c.Text(4), c.Int(5)};
      auto groups = ParseStringList(c.Text(3), "group list of contact " + contact.contact);
      if (!groups) return std::unexpected(groups.error());
      contact.groups = std::move(*groups);
      return ReplicatedRow{key, contact.home_pool, ContactPayloadJson(contact)};
    }
    case RowKind::kGroup: {
      ContactGroupRecord group{c.Text(0), c.Text(1), c.Text(2), c.Int(3)};
      return ReplicatedRow{key, group.home_pool, ContactGroupPayloadJson(group)};
    }
    case RowKind::kNote: {
      PresenceNoteRecord note{c.Text(0), c.Text(1), c.Text(2), c.Int(3)};
      return ReplicatedRow{key, note.home_pool, PresenceNotePayloadJson(note)};
    }
    case RowKind::kPrivacy: {
      PrivacySettings privacy;
      privacy.owner = c.Text(0);
      auto policy = ParsePrivacyPolicy(c.Text(1));
      if (!policy) return MakeError(ErrorCode::kCorruption, fmt::format("privacy policy of {} is unknown", privacy.owner));
      auto allow = ParseStringList(c.Text(2), "allow list of " + privacy.owner);
      if (!allow) return std::unexpected(allow.error());
      auto block = ParseStringList(c.Text(3), "block list of " + privacy.owner);
      if (!block) return std::unexpected(block.error());
      privacy.policy = *policy;
      privacy.allow = std::move(*allow);
      privacy.block = std::move(*block);
      privacy.home_pool = c.Text(4);
      privacy.updated_at_ms = c.Int(5);
      return ReplicatedRow{key, privacy.home_pool, PrivacyPayloadJson(privacy)};
    }
    case RowKind::kMeeting: {
      MeetingRecord meeting;
      meeting.id = c.Text(0);
      meeting.organizer = c.Text(1);
      meeting.home_pool = c.Text(2);
      meeting.subject = c.Text(3);
      meeting.start_ms = c.Int(4);
      meeting.end_ms = c.Int(5);
      auto attendees = ParseStringList(c.Text(6), "attendee list of meeting " + meeting.id);
      if (!attendees) return std::unexpected(attendees.error());
      meeting.attendees = std::move(*attendees);
      meeting.pin = c.Text(7);
      auto lobby = ParseLobbyPolicy(c.Text(8));
      auto state = ParseMeetingState(c.Text(9));
      if (!lobby || !state) {
        return MakeError(ErrorCode::kCorruption,
                         fmt::format("meeting {} has an unknown lobby policy or state", meeting.id));
      }
      meeting.lobby = *lobby;
      meeting.state = *state;
      meeting.created_ms = c.Int(10);
      meeting.updated_ms = c.Int(11);
      return ReplicatedRow{key, meeting.home_pool, MeetingPayloadJson(meeting)};
    }
    case RowKind::kContent: {
      ContentInfo info{c.Text(0), c.Text(1), c.Int(2), c.Text(3), c.Text(4), c.Int(5)};
      return ReplicatedRow{key, info.home_pool, ContentPayloadJson(info, c.Bytes(6))};
    }
    case RowKind::kCmsVersion: {
      CmsVersionRecord record{c.Int(0), c.Int(1), c.Text(2)};
      return ReplicatedRow{key, "", CmsVersionPayloadJson(record)};
    }
  }
  return MakeError(ErrorCode::kInternal, "a row of an unknown kind");
}

// ---- Keys and payloads to rows -----------------------------------------------------

// Typed fields of a payload object; remembers the first one missing or mistyped.
class PayloadFields {
 public:
  explicit PayloadFields(const json& object) : object_(object) {}

  std::string Text(const char* field) {
    const json* value = Find(field);
    if (!value || !value->is_string()) return Bad(field), std::string();
    return value->get<std::string>();
  }
  int64_t Int(const char* field) {
    const json* value = Find(field);
    if (!value || !value->is_number_integer() ||
        (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
      return Bad(field), 0;
    }
    return value->get<int64_t>();
  }
  // A JSON array of strings, stored (as the tables do) as its JSON text.
  std::string List(const char* field) {
    const json* value = Find(field);
    if (!value || !value->is_array() ||
        !std::all_of(value->begin(), value->end(), [](const json& item) { return item.is_string(); })) {
      return Bad(field), std::string();
    }
    return Dump(*value);
  }
  // kInvalidArgument naming the first bad field.
  Status status() const {
    if (bad_.empty()) return OkStatus();
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("field '{}' is missing or of the wrong type", bad_));
  }

 private:
  const json* Find(const char* field) const {
    auto it = object_.find(field);
    return it == object_.end() ? nullptr : &*it;
  }
  void Bad(const char* field) {
    if (bad_.empty()) bad_ = field;
  }

  const json& object_;
  std::string bad_;
};

std::unexpected<Error> Invalid(std::string message) { return MakeError(ErrorCode::kInvalidArgument, std::move(message)); }

// The kind of row a key of `module` names ("user": "<owner>" or "<owner>#<part>").
Result<RowKind> KindOfKey(std::string_view module, std::string_view key) {
  auto unknown = [&]() { return MakeError(ErrorCode::kInvalidArgument, fmt::format("unknown {} key kind", module)); };
  if (key.empty()) return unknown();
  if (module == kUser) {
    size_t hash = key.find('#');
    if (hash == 0) return unknown();
    if (hash == std::string_view::npos) return RowKind::kUser;
    std::string_view part = key.substr(hash + 1);
    if (part.starts_with("contact:")) return RowKind::kContact;
    if (part.starts_with("group:")) return RowKind::kGroup;
    if (part == "note") return RowKind::kNote;
    if (part == "privacy") return RowKind::kPrivacy;
  } else if (module == kConference) {
    if (key.starts_with("meeting:")) return RowKind::kMeeting;
    if (key.starts_with("content:")) return RowKind::kContent;
  } else if (module == kCms) {
    if (key.starts_with("version:")) return RowKind::kCmsVersion;
  }
  return unknown();
}

// Primary-key values of the row a key names (for a removal), checked by rebuilding
// the key from them.
Result<SqlRow> PrimaryKeyOf(RowKind kind, std::string_view key) {
  auto after = [&](std::string_view marker) {
    size_t at = key.find(marker);
    return std::string(key.substr(at + marker.size()));
  };
  std::string owner(key.substr(0, key.find('#')));
  SqlRow values;
  std::string rebuilt;
  switch (kind) {
    case RowKind::kUser:
      values = {owner};
      rebuilt = owner;
      break;
    case RowKind::kContact:
      values = {owner, after("#contact:")};
      rebuilt = ContactChangeKey(owner, std::get<std::string>(values[1]));
      break;
    case RowKind::kGroup:
      values = {owner, after("#group:")};
      rebuilt = ContactGroupChangeKey(owner, std::get<std::string>(values[1]));
      break;
    case RowKind::kNote:
      values = {owner};
      rebuilt = PresenceNoteChangeKey(owner);
      break;
    case RowKind::kPrivacy:
      values = {owner};
      rebuilt = PrivacyChangeKey(owner);
      break;
    case RowKind::kMeeting:
      values = {after("meeting:")};
      rebuilt = MeetingChangeKey(std::get<std::string>(values[0]));
      break;
    case RowKind::kContent: {
      std::string rest = after("content:");
      size_t slash = rest.find('/');
      if (slash == std::string::npos) return Invalid("a content key without '/'");
      values = {rest.substr(0, slash), rest.substr(slash + 1)};
      rebuilt = ContentChangeKey(std::get<std::string>(values[0]), std::get<std::string>(values[1]));
      break;
    }
    case RowKind::kCmsVersion:
      return Invalid("CMS versions are never removed");
  }
  if (rebuilt != key) return Invalid("a key that does not name one row");
  return values;
}

struct ParsedRow {
  std::string key;
  SqlRow values;
};

// A stored list's text (`text`, a JSON array of strings) in the form Dump writes it;
// kInvalidArgument naming `what` when it is not such an array.
Status CheckList(std::string& text, std::string_view what) {
  if (text == "[]") return OkStatus();  // most lists: no parser needed
  json list = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!list.is_array() || !std::all_of(list.begin(), list.end(), [](const json& item) { return item.is_string(); })) {
    return Invalid(fmt::format("{} is not a JSON array of strings", what));
  }
  text = Dump(list);
  return OkStatus();
}

// A partner's row of `table` (values of the column types, in column order) checked
// as the tables need it: lists well-formed, policies and states known, meetings and
// content consistent. kInvalidArgument otherwise. What a payload or a snapshot row
// asks for goes through here.
Result<ParsedRow> RowOfColumns(const ReplicatedTable& table, SqlRow values) {
  auto text = [&](size_t i) -> std::string& { return std::get<std::string>(values.at(i)); };
  auto number = [&](size_t i) { return std::get<int64_t>(values.at(i)); };
  switch (table.kind) {
    case RowKind::kUser:
    case RowKind::kGroup:
    case RowKind::kNote:
      break;
    case RowKind::kContact:
      if (auto s = CheckList(text(3), "groups"); !s) return std::unexpected(s.error());
      break;
    case RowKind::kPrivacy:
      if (!ParsePrivacyPolicy(text(1))) return Invalid(fmt::format("unknown privacy policy '{}'", text(1)));
      if (auto s = CheckList(text(2), "allow"); !s) return std::unexpected(s.error());
      if (auto s = CheckList(text(3), "block"); !s) return std::unexpected(s.error());
      break;
    case RowKind::kMeeting: {
      if (auto s = CheckList(text(6), "attendees"); !s) return std::unexpected(s.error());
      if (!ParseLobbyPolicy(text(8)) || !ParseMeetingState(text(9))) return Invalid("unknown lobby policy or meeting state");
      MeetingRecord meeting;
      meeting.id = text(0);
      meeting.organizer = text(1);
      meeting.subject = text(3);
      meeting.start_ms = number(4);
      meeting.end_ms = number(5);
      meeting.pin = text(7);
      if (auto s = CheckMeeting(meeting); !s) return std::unexpected(s.error());
      break;
    }
    case RowKind::kContent: {
      ContentInfo info{text(0), text(1), number(2), text(3), text(4), number(5)};
      if (auto s = CheckContentInfo(info); !s) return std::unexpected(s.error());
      if (static_cast<int64_t>(std::get<SqlBytes>(values.at(6)).bytes.size()) != info.size) {
        return Invalid("content size does not match its bytes");
      }
      break;
    }
    case RowKind::kCmsVersion:
      if (number(0) <= 0) return Invalid("a CMS version must be positive");
      break;
  }
  std::string key = KeyOfRow(table, values);
  return ParsedRow{std::move(key), std::move(values)};
}

// The values a payload of `kind` gives its table's columns, in column order.
Result<SqlRow> PayloadColumns(RowKind kind, const json& object) {
  PayloadFields f(object);
  SqlRow values;
  switch (kind) {
    case RowKind::kUser:
      values = {f.Text("uri"),     f.Text("username"),     f.Text("domain"),          f.Text("home_pool"),
                f.Text("ha1_md5"), f.Text("ha1_sha256"),   f.Text("ha1_md5_full"),    f.Text("ha1_sha256_full"),
                f.Int("created_at_ms")};
      break;
    case RowKind::kContact:
      values = {f.Text("owner"),     f.Text("contact"),       f.Text("display_name"),
                f.List("groups"),    f.Text("home_pool"),     f.Int("updated_at_ms")};
      break;
    case RowKind::kGroup:
      values = {f.Text("owner"), f.Text("name"), f.Text("home_pool"), f.Int("created_at_ms")};
      break;
    case RowKind::kNote:
      values = {f.Text("owner"), f.Text("note"), f.Text("home_pool"), f.Int("updated_at_ms")};
      break;
    case RowKind::kPrivacy:
      values = {f.Text("owner"), f.Text("policy"),    f.List("allow"),
                f.List("block"), f.Text("home_pool"), f.Int("updated_at_ms")};
      break;
    case RowKind::kMeeting:
      values = {f.Text("id"),        f.Text("organizer"), f.Text("home_pool"), f.Text("subject"),
                f.Int("start_ms"),   f.Int("end_ms"),     f.List("attendees"), f.Text("pin"),
                f.Text("lobby"),     f.Text("state"),     f.Int("created_ms"), f.Int("updated_ms")};
      break;
    case RowKind::kContent: {
      values = {f.Text("meeting_id"), f.Text("name"),      f.Int("size"),
                f.Text("sha256"),     f.Text("home_pool"), f.Int("uploaded_ms")};
      std::string encoded = f.Text("content_base64");
      if (auto s = f.status(); !s) return std::unexpected(s.error());
      auto bytes = DecodeBase64(encoded);
      if (!bytes) return std::unexpected(bytes.error());
      values.emplace_back(std::in_place_type<SqlBytes>, SqlBytes{std::move(*bytes)});
      break;
    }
    case RowKind::kCmsVersion:
      values = {f.Int("version"), f.Int("published_at_ms"), f.Text("document")};
      break;
  }
  if (auto s = f.status(); !s) return std::unexpected(s.error());
  return values;
}

// One record of `module` as a row write.
Result<RowWrite> ParseWrite(std::string_view module, std::string_view key, std::string_view op,
                            std::string_view payload) {
  auto kind = KindOfKey(module, key);
  if (!kind) return std::unexpected(kind.error());
  RowWrite write{&TableOf(*kind), std::string(key), op == "delete", {}};
  if (write.remove) {
    if (!payload.empty()) return Invalid("a delete record with a payload");
    auto values = PrimaryKeyOf(*kind, key);
    if (!values) return std::unexpected(values.error());
    write.values = std::move(*values);
    return write;
  }
  if (op != "upsert") return Invalid(fmt::format("unknown op '{}'", op));
  json object = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return Invalid("the payload is not a JSON object");
  auto values = PayloadColumns(*kind, object);
  if (!values) return std::unexpected(values.error());
  auto row = RowOfColumns(*write.table, std::move(*values));
  if (!row) return std::unexpected(row.error());
  if (row->key != key) return Invalid(fmt::format("the payload is the row of key '{}'", row->key));
  write.values = std::move(row->values);
  return write;
}

struct ParsedChange {
  int64_t seq = 0;
  int64_t at_ms = 0;
  RowWrite write;
};

// Every record of `batch` checked and parsed: kInvalidArgument naming the first
// record of another module, an unknown key kind, a payload that does not parse or
// names another key, or a seq that does not increase.
Result<std::vector<ParsedChange>> ParseChanges(std::string_view module, const std::vector<ChangeRecord>& batch) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  std::vector<ParsedChange> parsed;
  parsed.reserve(batch.size());
  for (const ChangeRecord& record : batch) {
    auto fail = [&](std::string_view why) {
      return Invalid(fmt::format("change {} (key '{}'): {}", record.seq, record.key, why));
    };
    if (record.module != module) return fail("a record of module " + record.module);
    if (!parsed.empty() && record.seq <= parsed.back().seq) return fail("seq does not increase");
    auto write = ParseWrite(module, record.key, record.op, record.payload);
    if (!write) return fail(write.error().message);
    parsed.push_back(ParsedChange{record.seq, record.at_ms, std::move(*write)});
  }
  return parsed;
}

// ---- Snapshot chunks ---------------------------------------------------------------
// A chunk is a JSON array of rows, each [table, value...]: the table's name, then
// its columns' values in order (text and integers as JSON strings and numbers, bytes
// as base64 strings). Written straight from the scanned rows and read straight into
// row writes, through nlohmann's SAX interface: a JSON value per row (payloads) cost
// more than everything else an initial sync of millions of rows does.

// Appends `row` of `table` to a chunk's text.
void AppendSnapshotRow(std::string& out, const ReplicatedTable& table, const SqlRow& row) {
  out += "[\"";
  out += table.name;  // a plain identifier
  out += '"';
  for (const SqlValue& value : row) {
    out += ',';
    if (const auto* text = std::get_if<std::string>(&value)) {
      AppendJsonString(out, *text);
    } else if (const auto* number = std::get_if<int64_t>(&value)) {
      char digits[24];
      out.append(digits, std::to_chars(digits, digits + sizeof digits, *number).ptr);
    } else {
      out += '"';
      out += Base64(std::get<SqlBytes>(value).bytes);
      out += '"';
    }
  }
  out += ']';
}

// The SAX handler reading a chunk of `module` homed in `home_pool`: every row checked
// (RowOfColumns, homed in the pool unless a CMS version, keys increasing as a scan
// gives them: each key once) into a row write. The first fault stops the parse.
class SnapshotChunkReader {
 public:
  SnapshotChunkReader(std::span<const ReplicatedTable> tables, std::string_view home_pool)
      : tables_(tables), home_pool_(home_pool) {
    for (const ReplicatedTable& table : tables_) {
      shapes_.push_back({std::strlen(table.types), HomePoolColumn(table)});
    }
  }

  Result<std::vector<RowWrite>> Read(std::string_view chunk) && {
    bool parsed = json::sax_parse(chunk.data(), chunk.data() + chunk.size(), this);
    if (!parsed || !error_.empty()) {
      return Invalid(fmt::format("snapshot row {}: {}", writes_.size() + 1, error_.empty() ? "not JSON" : error_));
    }
    return std::move(writes_);
  }

  // nlohmann's SAX events.
  bool null() { return Fail("a null value"); }
  bool boolean(bool) { return Fail("a boolean value"); }
  bool number_integer(int64_t value) { return Integer(value); }
  bool number_unsigned(uint64_t value) {
    if (value > static_cast<uint64_t>(INT64_MAX)) return Fail("an integer out of range");
    return Integer(static_cast<int64_t>(value));
  }
  bool number_float(double, const std::string&) { return Fail("a number that is not an integer"); }
  bool string(std::string& value) { return depth_ == 2 && !table_ ? StartRow(value) : Text(value); }
  bool binary(json::binary_t&) { return Fail("binary data"); }
  bool start_object(size_t) { return Fail("an object"); }
  bool key(std::string&) { return Fail("an object"); }
  bool end_object() { return Fail("an object"); }
  bool start_array(size_t) {
    if (depth_ == 2) return Fail("an array inside a row");
    if (++depth_ == 2) {
      table_ = nullptr;
      values_.clear();
    }
    return true;
  }
  bool end_array() { return depth_-- == 2 ? EndRow() : true; }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception&) {
    return Fail(fmt::format("not JSON (at byte {})", position));
  }

 private:
  struct Shape {
    size_t columns;
    int home_pool_column;
  };

  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  // The type letter of the next value's column, or 0 (and the parse fails).
  char NextType() {
    if (depth_ != 2) return Fail("a value outside a row"), 0;
    if (!table_) return Fail("a row that does not start with its table's name"), 0;
    if (values_.size() == shape_->columns) return Fail(fmt::format("more than {} values", shape_->columns)), 0;
    return table_->types[values_.size()];
  }
  bool StartRow(const std::string& name) {
    for (size_t i = 0; i < tables_.size(); ++i) {
      if (name == tables_[i].name) {
        table_ = &tables_[i];
        shape_ = &shapes_[i];
        values_.reserve(shape_->columns);
        return true;
      }
    }
    return Fail(fmt::format("table '{}' is not replicated with module {}", name, tables_.front().module));
  }
  bool Text(const std::string& value) {
    char type = NextType();
    if (type == 't') {
      values_.emplace_back(value);  // a copy: the parser reuses its buffer
      return true;
    }
    if (type == 'b') {
      auto bytes = DecodeBase64(value);
      if (!bytes) return Fail(bytes.error().message);
      values_.emplace_back(SqlBytes{std::move(*bytes)});
      return true;
    }
    return type == 0 ? false : Fail(fmt::format("text for integer column {} of {}", values_.size() + 1, table_->name));
  }
  bool Integer(int64_t value) {
    char type = NextType();
    if (type == 'i') {
      values_.emplace_back(value);
      return true;
    }
    return type == 0 ? false : Fail(fmt::format("an integer for column {} of {}", values_.size() + 1, table_->name));
  }
  bool EndRow() {
    if (!table_) return Fail("an empty row");
    if (values_.size() != shape_->columns) {
      return Fail(fmt::format("{} values for the {} columns of {}", values_.size(), shape_->columns, table_->name));
    }
    if (shape_->home_pool_column >= 0) {
      const auto& row_pool = std::get<std::string>(values_[shape_->home_pool_column]);
      if (row_pool != home_pool_) return Fail(fmt::format("homed in '{}', not in '{}'", row_pool, home_pool_));
    }
    auto row = RowOfColumns(*table_, std::move(values_));
    values_ = SqlRow();
    if (!row) return Fail(row.error().message);
    if (!writes_.empty() && row->key <= writes_.back().key) {
      return Fail(fmt::format("'{}' is not in key order", row->key));
    }
    writes_.push_back(RowWrite{table_, std::move(row->key), false, std::move(row->values)});
    return true;
  }

  const std::span<const ReplicatedTable> tables_;
  const std::string_view home_pool_;
  std::vector<Shape> shapes_;  // of tables_[i]
  int depth_ = 0;              // 1 inside the chunk, 2 inside a row
  const ReplicatedTable* table_ = nullptr;  // of the row being read
  const Shape* shape_ = nullptr;
  SqlRow values_;
  std::vector<RowWrite> writes_;
  std::string error_;
};

// A chunk's rows checked and parsed (kInvalidArgument naming the first bad one).
Result<std::vector<RowWrite>> ParseSnapshotChunk(std::string_view module, std::string_view home_pool,
                                                 std::string_view chunk) {
  auto tables = ReplicatedTables(module);
  if (!tables) return std::unexpected(tables.error());
  return SnapshotChunkReader(*tables, home_pool).Read(chunk);
}

// ---- Applying ----------------------------------------------------------------------

// Runs the writes grouped by table and operation. The keys are distinct, so the order
// between groups does not matter.
Status WriteRows(ReplicationTx& tx, const std::vector<const RowWrite*>& writes) {
  std::vector<const RowWrite*> group;
  for (RowKind kind : {RowKind::kUser, RowKind::kContact, RowKind::kGroup, RowKind::kNote, RowKind::kPrivacy,
                       RowKind::kMeeting, RowKind::kContent, RowKind::kCmsVersion}) {
    const ReplicatedTable& table = TableOf(kind);
    for (bool remove : {true, false}) {
      group.clear();
      for (const RowWrite* write : writes) {
        if (write->table == &table && write->remove == remove) group.push_back(write);
      }
      if (group.empty()) continue;
      if (auto s = remove ? tx.Remove(table, group) : tx.Upsert(table, group); !s) return s;
    }
  }
  return OkStatus();
}

Status ApplyChangesIn(ReplicationTx& tx, std::string_view source_pool, std::string_view module,
                      const std::vector<ParsedChange>& changes, ImportProgress* progress) {
  auto current = tx.LockImportProgress(source_pool, module);
  if (!current) return std::unexpected(current.error());
  *progress = std::move(*current);
  // A resent (or concurrently sent) batch: what was applied already is skipped.
  auto first_new = std::find_if(changes.begin(), changes.end(),
                                [&](const ParsedChange& change) { return change.seq > progress->applied_seq; });
  if (first_new == changes.end()) return OkStatus();
  // The newest record of a key reproduces its row, so only that one is written.
  std::unordered_map<std::string_view, const RowWrite*> newest;
  std::vector<const RowWrite*> writes;
  for (auto it = changes.end(); it != first_new;) {
    --it;
    if (newest.emplace(it->write.key, &it->write).second) writes.push_back(&it->write);
  }
  if (auto s = WriteRows(tx, writes); !s) return s;
  progress->applied_seq = changes.back().seq;
  progress->source_at_ms = changes.back().at_ms;
  progress->applied_at_ms = NowUnixMillis();
  return tx.SaveImportProgress(*progress);
}

Status ApplySnapshotIn(ReplicationTx& tx, std::string_view source_pool, std::string_view module,
                       std::string_view home_pool, int64_t snapshot_seq, bool first, bool last,
                       const std::vector<RowWrite>& rows, ImportProgress* progress) {
  auto tables = ReplicatedTables(module);
  if (!tables) return std::unexpected(tables.error());
  if (snapshot_seq < 0) return Invalid("a snapshot seq cannot be negative");
  auto current = tx.LockImportProgress(source_pool, module);
  if (!current) return std::unexpected(current.error());
  *progress = std::move(*current);
  if (first) {
    for (const ReplicatedTable& table : *tables) {
      if (!table.homed) continue;  // CMS versions are never removed
      if (auto s = tx.RemovePool(table, home_pool); !s) return s;
    }
    progress->snapshot_seq = snapshot_seq;
  } else if (last && progress->snapshot_seq == 0 && progress->applied_seq == snapshot_seq) {
    // The last chunk again (its acknowledgement was lost): its rows are upserts.
  } else if (progress->snapshot_seq == 0) {
    // Later chunks may carry another seq (the sender learns the scan's head at its
    // end), but they must follow a first chunk.
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("no snapshot of {} from {} is being applied (restart it with a first chunk)", module,
                                 source_pool));
  }
  std::vector<const RowWrite*> writes;
  writes.reserve(rows.size());
  for (const RowWrite& row : rows) writes.push_back(&row);
  if (auto s = WriteRows(tx, writes); !s) return s;
  if (last) {
    progress->applied_seq = snapshot_seq;
    progress->snapshot_seq = 0;
  }
  progress->applied_at_ms = NowUnixMillis();
  return tx.SaveImportProgress(*progress);
}

}  // namespace

Result<ImportProgress> ApplyChangesWith(const InReplicationTx& transact, std::string_view source_pool,
                                        std::string_view module, const std::vector<ChangeRecord>& batch) {
  auto parsed = ParseChanges(module, batch);  // before the write lock: parsing is the slow part
  if (!parsed) return std::unexpected(parsed.error());
  ImportProgress progress;
  auto applied =
      transact([&](ReplicationTx& tx) { return ApplyChangesIn(tx, source_pool, module, *parsed, &progress); });
  if (!applied) return std::unexpected(applied.error());
  return progress;
}

Result<ImportProgress> ApplySnapshotChunkWith(const InReplicationTx& transact, std::string_view source_pool,
                                              std::string_view module, std::string_view home_pool,
                                              int64_t snapshot_seq, bool first, bool last,
                                              std::string_view chunk) {
  auto parsed = ParseSnapshotChunk(module, home_pool, chunk);  // before the write lock, as above
  if (!parsed) return std::unexpected(parsed.error());
  ImportProgress progress;
  auto applied = transact([&](ReplicationTx& tx) {
    return ApplySnapshotIn(tx, source_pool, module, home_pool, snapshot_seq, first, last, *parsed, &progress);
  });
  if (!applied) return std::unexpected(applied.error());
  return progress;
}

// ---- Scanning ----------------------------------------------------------------------

namespace {

// One table's cursor and its next row (nullopt once done), with the row's key.
struct MergeSource {
  const ReplicatedTable* table;
  std::unique_ptr<RowCursor> cursor;
  SqlRow row;
  std::string key;
  bool done = false;

  Status Advance() {
    auto more = cursor->Next(&row);
    if (!more) return std::unexpected(more.error());
    done = !*more;
    if (!done) key = KeyOfRow(*table, row);
    return OkStatus();
  }
};

using RowVisitor = std::function<Status(const ReplicatedTable& table, const SqlRow& row, const std::string& key)>;

// Calls `visit` with each row of `module` homed in `home_pool` whose key is in
// [key_from, key_to), in key order: opens a cursor per table and merges them
// (kCorruption, rather than a wrong order, should a row's key not sort where its
// primary key does). Stops at the first failing visit.
Status MergeTables(std::string_view module, std::string_view home_pool, std::string_view key_from,
                   std::string_view key_to, Placeholder placeholder, const OpenCursor& open, const RowVisitor& visit) {
  auto tables = ReplicatedTables(module);
  if (!tables) return std::unexpected(tables.error());
  std::vector<MergeSource> sources;
  for (const ReplicatedTable& table : *tables) {
    auto cursor = open(table, ScanQuery(table, home_pool, key_from, key_to, placeholder));
    if (!cursor) return std::unexpected(cursor.error());
    sources.push_back(MergeSource{&table, std::move(*cursor)});
    if (auto s = sources.back().Advance(); !s) return s;
  }
  // Each table comes in primary-key order, which is its keys' order (see
  // LowerOwnerBound); a k-way merge of a handful of tables gives the global order.
  std::string last_key;
  bool any = false;
  for (;;) {
    MergeSource* next = nullptr;
    for (MergeSource& source : sources) {
      if (!source.done && (!next || source.key < next->key)) next = &source;
    }
    if (!next) break;
    if (any && next->key <= last_key) {
      return MakeError(ErrorCode::kCorruption,
                       fmt::format("key '{}' of table {} sorts before '{}': an owner that continues another owner "
                                   "with a byte below '#' cannot be replicated",
                                   next->key, next->table->name, last_key));
    }
    any = true;
    last_key = next->key;
    if (next->key >= key_from && (key_to.empty() || next->key < key_to)) {
      if (auto s = visit(*next->table, next->row, next->key); !s) return s;
    }
    if (auto s = next->Advance(); !s) return s;
  }
  return OkStatus();
}

}  // namespace

Status ScanTables(std::string_view module, std::string_view home_pool, std::string_view key_from,
                  std::string_view key_to, int chunk_rows, Placeholder placeholder, const OpenCursor& open,
                  const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  if (chunk_rows <= 0) return Invalid("chunk_rows must be positive");
  std::vector<ReplicatedRow> chunk;
  auto merged = MergeTables(module, home_pool, key_from, key_to, placeholder, open,
                            [&](const ReplicatedTable& table, const SqlRow& row, const std::string& key) -> Status {
                              auto converted = ReplicatedRowOf(table, row, key);
                              if (!converted) return std::unexpected(converted.error());
                              chunk.push_back(std::move(*converted));
                              if (static_cast<int>(chunk.size()) < chunk_rows) return OkStatus();
                              Status sunk = sink(std::move(chunk));
                              chunk.clear();
                              return sunk;
                            });
  if (!merged) return merged;
  if (!chunk.empty()) return sink(std::move(chunk));
  return OkStatus();
}

Status ScanSnapshotTables(std::string_view module, std::string_view home_pool, int chunk_rows, size_t chunk_bytes,
                          Placeholder placeholder, const OpenCursor& open,
                          const std::function<Status(SnapshotChunk&&)>& sink) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  if (chunk_rows <= 0) return Invalid("chunk_rows must be positive");
  SnapshotChunk chunk{"[", 0};
  auto flush = [&]() -> Status {
    chunk.json += ']';
    size_t size = chunk.json.size();
    Status sunk = sink(std::move(chunk));
    chunk = SnapshotChunk{"[", 0};
    chunk.json.reserve(size);  // the next chunk is about as large
    return sunk;
  };
  auto merged = MergeTables(module, home_pool, "", "", placeholder, open,
                            [&](const ReplicatedTable& table, const SqlRow& row, const std::string&) -> Status {
                              if (chunk.rows > 0) chunk.json += ',';
                              AppendSnapshotRow(chunk.json, table, row);
                              ++chunk.rows;
                              if (chunk.rows < chunk_rows && chunk.json.size() < chunk_bytes) return OkStatus();
                              return flush();
                            });
  if (!merged) return merged;
  if (chunk.rows > 0) return flush();
  return OkStatus();
}

Result<RowsDigest> DigestRows(Store& store, std::string_view module, std::string_view home_pool,
                              std::string_view key_from, std::string_view key_to) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  TANDEM_CHECK(context && EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) == 1);
  RowsDigest digest;
  std::string text;  // a chunk's "<key>\n<payload>\n" lines, hashed at once
  auto scanned = store.ScanRows(module, home_pool, key_from, key_to, 1000, [&](std::vector<ReplicatedRow>&& rows) {
    text.clear();
    for (const ReplicatedRow& row : rows) {
      text += row.key;
      text += '\n';
      text += row.payload;
      text += '\n';
    }
    TANDEM_CHECK(EVP_DigestUpdate(context.get(), text.data(), text.size()) == 1);
    digest.rows += static_cast<int64_t>(rows.size());
    return OkStatus();
  });
  if (!scanned) return std::unexpected(scanned.error());
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  TANDEM_CHECK(EVP_DigestFinal_ex(context.get(), hash, &length) == 1);
  for (unsigned int i = 0; i < length; ++i) digest.sha256 += fmt::format("{:02x}", hash[i]);
  return digest;
}

std::string PersistentChangesRefusedKey(std::string_view home_pool) {
  return fmt::format("dr.refuse_changes.{}", home_pool);
}

}  // namespace tandem

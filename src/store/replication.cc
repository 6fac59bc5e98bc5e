#include "store/replication.h"

#include <openssl/evp.h>

#include <algorithm>
#include <optional>
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
    query.params.push_back(std::move(value));
  };
  if (table.homed) add("home_pool =", std::string(home_pool));
  if (table.owner_keyed && !key_from.empty()) add(fmt::format("{} >=", names[0]), LowerOwnerBound(key_from));
  if (table.owner_keyed && !key_to.empty()) add(fmt::format("{} <=", names[0]), UpperOwnerBound(key_to));
  std::vector<std::string_view> key(names.begin(), names.begin() + table.key_columns);
  query.sql = fmt::format("SELECT {} FROM {}{} ORDER BY {}", table.columns, table.name, where, fmt::join(key, ", "));
  return query;
}

std::string UpsertSql(const ReplicatedTable& table, int rows, Placeholder placeholder) {
  std::vector<std::string_view> names = ColumnNames(table);
  int width = static_cast<int>(names.size());
  std::string sql = fmt::format("INSERT INTO {}({}) VALUES ", table.name, table.columns);
  for (int row = 0; row < rows; ++row) sql += (row ? ", " : "") + Tuple(row * width + 1, width, placeholder);
  std::vector<std::string_view> key(names.begin(), names.begin() + table.key_columns);
  if (!table.homed) return sql + fmt::format(" ON CONFLICT ({}) DO NOTHING", fmt::join(key, ", "));
  std::vector<std::string> sets;
  for (size_t i = table.key_columns; i < names.size(); ++i) sets.push_back(fmt::format("{0} = excluded.{0}", names[i]));
  return sql + fmt::format(" ON CONFLICT ({}) DO UPDATE SET {}", fmt::join(key, ", "), fmt::join(sets, ", "));
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

Result<ReplicatedRow> ReplicatedRowOf(const ReplicatedTable& table, const SqlRow& row) {
  Columns c(row);
  switch (table.kind) {
    case RowKind::kUser: {
      UserRecord user{c.Text(0), c.Text(1), c.Text(2), c.Text(3), c.Text(4),
                      c.Text(5), c.Text(6), c.Text(7), c.Int(8)};
      return ReplicatedRow{user.uri, user.home_pool, UserPayloadJson(user)};
    }
    case RowKind::kContact: {
      ContactRecord contact{c.Text(0), c.Text(1), c.Text(2), {}, c.Text(4), c.Int(5)};
      auto groups = ParseStringList(c.Text(3), "group list of contact " + contact.contact);
      if (!groups) return std::unexpected(groups.error());
      contact.groups = std::move(*groups);
      return ReplicatedRow{ContactChangeKey(contact.owner, contact.contact), contact.home_pool,
                           ContactPayloadJson(contact)};
    }
    case RowKind::kGroup: {
      ContactGroupRecord group{c.Text(0), c.Text(1), c.Text(2), c.Int(3)};
      return ReplicatedRow{ContactGroupChangeKey(group.owner, group.name), group.home_pool,
                           ContactGroupPayloadJson(group)};
    }
    case RowKind::kNote: {
      PresenceNoteRecord note{c.Text(0), c.Text(1), c.Text(2), c.Int(3)};
      return ReplicatedRow{PresenceNoteChangeKey(note.owner), note.home_pool, PresenceNotePayloadJson(note)};
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
      return ReplicatedRow{PrivacyChangeKey(privacy.owner), privacy.home_pool, PrivacyPayloadJson(privacy)};
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
      return ReplicatedRow{MeetingChangeKey(meeting.id), meeting.home_pool, MeetingPayloadJson(meeting)};
    }
    case RowKind::kContent: {
      ContentInfo info{c.Text(0), c.Text(1), c.Int(2), c.Text(3), c.Text(4), c.Int(5)};
      return ReplicatedRow{ContentChangeKey(info.meeting_id, info.name), info.home_pool,
                           ContentPayloadJson(info, c.Bytes(6))};
    }
    case RowKind::kCmsVersion: {
      CmsVersionRecord record{c.Int(0), c.Int(1), c.Text(2)};
      return ReplicatedRow{CmsVersionChangeKey(record.version), "", CmsVersionPayloadJson(record)};
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
  std::string home_pool;
  SqlRow values;
};

// A payload of `kind` as the row it describes.
Result<ParsedRow> RowOfPayload(RowKind kind, const json& object) {
  PayloadFields f(object);
  ParsedRow row;
  switch (kind) {
    case RowKind::kUser: {
      UserRecord user{f.Text("uri"),          f.Text("username"),        f.Text("domain"),
                      f.Text("home_pool"),    f.Text("ha1_md5"),         f.Text("ha1_sha256"),
                      f.Text("ha1_md5_full"), f.Text("ha1_sha256_full"), f.Int("created_at_ms")};
      row = {user.uri, user.home_pool,
             SqlRow{user.uri, user.username, user.domain, user.home_pool, user.ha1_md5, user.ha1_sha256,
                    user.ha1_md5_full, user.ha1_sha256_full, user.created_at_ms}};
      break;
    }
    case RowKind::kContact: {
      ContactRecord contact{f.Text("owner"), f.Text("contact"), f.Text("display_name"), {}, f.Text("home_pool"),
                            f.Int("updated_at_ms")};
      std::string groups = f.List("groups");
      row = {ContactChangeKey(contact.owner, contact.contact), contact.home_pool,
             SqlRow{contact.owner, contact.contact, contact.display_name, groups, contact.home_pool,
                    contact.updated_at_ms}};
      break;
    }
    case RowKind::kGroup: {
      ContactGroupRecord group{f.Text("owner"), f.Text("name"), f.Text("home_pool"), f.Int("created_at_ms")};
      row = {ContactGroupChangeKey(group.owner, group.name), group.home_pool,
             SqlRow{group.owner, group.name, group.home_pool, group.created_at_ms}};
      break;
    }
    case RowKind::kNote: {
      PresenceNoteRecord note{f.Text("owner"), f.Text("note"), f.Text("home_pool"), f.Int("updated_at_ms")};
      row = {PresenceNoteChangeKey(note.owner), note.home_pool,
             SqlRow{note.owner, note.note, note.home_pool, note.updated_at_ms}};
      break;
    }
    case RowKind::kPrivacy: {
      std::string owner = f.Text("owner");
      std::string policy = f.Text("policy");
      if (f.status() && !ParsePrivacyPolicy(policy)) return Invalid(fmt::format("unknown privacy policy '{}'", policy));
      std::string home_pool = f.Text("home_pool");
      row = {PrivacyChangeKey(owner), home_pool,
             SqlRow{owner, policy, f.List("allow"), f.List("block"), home_pool, f.Int("updated_at_ms")}};
      break;
    }
    case RowKind::kMeeting: {
      MeetingRecord meeting;
      meeting.id = f.Text("id");
      meeting.organizer = f.Text("organizer");
      meeting.home_pool = f.Text("home_pool");
      meeting.subject = f.Text("subject");
      meeting.start_ms = f.Int("start_ms");
      meeting.end_ms = f.Int("end_ms");
      std::string attendees = f.List("attendees");
      meeting.pin = f.Text("pin");
      std::string lobby = f.Text("lobby");
      std::string state = f.Text("state");
      if (auto s = f.status(); !s) return std::unexpected(s.error());
      if (!ParseLobbyPolicy(lobby) || !ParseMeetingState(state)) return Invalid("unknown lobby policy or meeting state");
      if (auto s = CheckMeeting(meeting); !s) return std::unexpected(s.error());
      row = {MeetingChangeKey(meeting.id), meeting.home_pool,
             SqlRow{meeting.id, meeting.organizer, meeting.home_pool, meeting.subject, meeting.start_ms,
                    meeting.end_ms, attendees, meeting.pin, lobby, state, f.Int("created_ms"), f.Int("updated_ms")}};
      break;
    }
    case RowKind::kContent: {
      ContentInfo info{f.Text("meeting_id"), f.Text("name"), f.Int("size"), f.Text("sha256"), f.Text("home_pool"),
                       f.Int("uploaded_ms")};
      std::string encoded = f.Text("content_base64");
      if (auto s = f.status(); !s) return std::unexpected(s.error());
      if (auto s = CheckContentInfo(info); !s) return std::unexpected(s.error());
      auto bytes = DecodeBase64(encoded);
      if (!bytes) return std::unexpected(bytes.error());
      if (static_cast<int64_t>(bytes->size()) != info.size) return Invalid("content size does not match its bytes");
      row = {ContentChangeKey(info.meeting_id, info.name), info.home_pool,
             SqlRow{info.meeting_id, info.name, info.size, info.sha256, info.home_pool, info.uploaded_ms,
                    SqlBytes{std::move(*bytes)}}};
      break;
    }
    case RowKind::kCmsVersion: {
      CmsVersionRecord record{f.Int("version"), f.Int("published_at_ms"), f.Text("document")};
      if (record.version <= 0) return Invalid("a CMS version must be positive");
      row = {CmsVersionChangeKey(record.version), "", SqlRow{record.version, record.published_at_ms, record.document}};
      break;
    }
  }
  if (auto s = f.status(); !s) return std::unexpected(s.error());
  return row;
}

// One record (or snapshot row) of `module` as a row write, and the home pool its
// payload names (upserts).
Result<RowWrite> ParseWrite(std::string_view module, std::string_view key, std::string_view op,
                            std::string_view payload, std::string* home_pool) {
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
  auto row = RowOfPayload(*kind, object);
  if (!row) return std::unexpected(row.error());
  if (row->key != key) return Invalid(fmt::format("the payload is the row of key '{}'", row->key));
  write.values = std::move(row->values);
  if (home_pool) *home_pool = std::move(row->home_pool);
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
    auto write = ParseWrite(module, record.key, record.op, record.payload, nullptr);
    if (!write) return fail(write.error().message);
    parsed.push_back(ParsedChange{record.seq, record.at_ms, std::move(*write)});
  }
  return parsed;
}

// Snapshot rows checked and parsed; each must be homed in `home_pool` (unless cms).
Result<std::vector<RowWrite>> ParseSnapshotRows(std::string_view module, std::string_view home_pool,
                                                const std::vector<ReplicatedRow>& rows) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  std::vector<RowWrite> writes;
  writes.reserve(rows.size());
  for (const ReplicatedRow& row : rows) {
    std::string row_pool;
    auto write = ParseWrite(module, row.key, "upsert", row.payload, &row_pool);
    if (write && write->table->homed && row_pool != home_pool) {
      write = Invalid(fmt::format("homed in '{}', not in '{}'", row_pool, home_pool));
    } else if (write && !writes.empty() && row.key <= writes.back().key) {
      write = Invalid("rows are not in key order");  // as ScanRows gives them: each key once
    }
    if (!write) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("snapshot row '{}': {}", row.key, write.error().message));
    }
    writes.push_back(std::move(*write));
  }
  return writes;
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
                                              const std::vector<ReplicatedRow>& rows) {
  auto parsed = ParseSnapshotRows(module, home_pool, rows);
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

// The next row of one table's cursor, converted.
struct MergeSource {
  const ReplicatedTable* table;
  std::unique_ptr<RowCursor> cursor;
  std::optional<ReplicatedRow> head;  // nullopt once the cursor is done

  Status Advance() {
    SqlRow row;
    auto more = cursor->Next(&row);
    if (!more) return std::unexpected(more.error());
    if (!*more) {
      head.reset();
      return OkStatus();
    }
    auto converted = ReplicatedRowOf(*table, row);
    if (!converted) return std::unexpected(converted.error());
    head = std::move(*converted);
    return OkStatus();
  }
};

}  // namespace

Status ScanTables(std::string_view module, std::string_view home_pool, std::string_view key_from,
                  std::string_view key_to, int chunk_rows, Placeholder placeholder, const OpenCursor& open,
                  const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) {
  auto tables = ReplicatedTables(module);
  if (!tables) return std::unexpected(tables.error());
  if (chunk_rows <= 0) return Invalid("chunk_rows must be positive");
  std::vector<MergeSource> sources;
  for (const ReplicatedTable& table : *tables) {
    auto cursor = open(table, ScanQuery(table, home_pool, key_from, key_to, placeholder));
    if (!cursor) return std::unexpected(cursor.error());
    sources.push_back(MergeSource{&table, std::move(*cursor), std::nullopt});
    if (auto s = sources.back().Advance(); !s) return s;
  }
  // Each table comes in primary-key order, which is its keys' order (see
  // LowerOwnerBound); a k-way merge of a handful of tables gives the global order.
  std::vector<ReplicatedRow> chunk;
  std::string last_key;
  bool any = false;
  for (;;) {
    MergeSource* next = nullptr;
    for (MergeSource& source : sources) {
      if (source.head && (!next || source.head->key < next->head->key)) next = &source;
    }
    if (!next) break;
    ReplicatedRow row = std::move(*next->head);
    if (auto s = next->Advance(); !s) return s;
    if (any && row.key <= last_key) {
      return MakeError(ErrorCode::kCorruption,
                       fmt::format("key '{}' of table {} sorts before '{}': an owner that continues another owner "
                                   "with a byte below '#' cannot be replicated",
                                   row.key, next->table->name, last_key));
    }
    any = true;
    last_key = row.key;
    if (row.key < key_from || (!key_to.empty() && row.key >= key_to)) continue;
    chunk.push_back(std::move(row));
    if (static_cast<int>(chunk.size()) == chunk_rows) {
      if (auto s = sink(std::move(chunk)); !s) return s;
      chunk.clear();
    }
  }
  if (!chunk.empty()) return sink(std::move(chunk));
  return OkStatus();
}

Result<RowsDigest> DigestRows(Store& store, std::string_view module, std::string_view home_pool,
                              std::string_view key_from, std::string_view key_to) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  TANDEM_CHECK(context && EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) == 1);
  RowsDigest digest;
  auto scanned = store.ScanRows(module, home_pool, key_from, key_to, 1000, [&](std::vector<ReplicatedRow>&& rows) {
    for (const ReplicatedRow& row : rows) {
      for (std::string_view part : {std::string_view(row.key), std::string_view("\n"), std::string_view(row.payload),
                                    std::string_view("\n")}) {
        TANDEM_CHECK(EVP_DigestUpdate(context.get(), part.data(), part.size()) == 1);
      }
    }
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

// The back-end store: the persistent truth of a pool — CMS versions, users, user
// data (contact lists, groups, presence notes, privacy), conference data (meetings
// and their content) and the change log that the Backup Service ships.
// One interface, several implementations (SQLite embedded default; PostgreSQL).
//
// Thread-safety: a Store object may be used from several threads; implementations
// serialize access internally. Several processes may open the same SQLite file
// (or PostgreSQL database).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tandem {

// One published version of the Central Management Store document.
struct CmsVersionRecord {
  int64_t version = 0;
  int64_t published_at_ms = 0;  // Unix time, milliseconds
  std::string document;         // the serialized CMS document (JSON)
};

// A provisioned user. Passwords are never stored: only HA1 digests, for the short
// digest username ("alice") and the full one ("alice@example.com"), per algorithm.
struct UserRecord {
  std::string uri;        // "sip:alice@example.com"
  std::string username;   // "alice"
  std::string domain;     // "example.com" (also the digest realm)
  std::string home_pool;  // FQDN of the pool that homes the user
  std::string ha1_md5;
  std::string ha1_sha256;
  std::string ha1_md5_full;     // HA1 with "alice@example.com" as the digest username
  std::string ha1_sha256_full;
  int64_t created_at_ms = 0;
};

// One entry of the change log: every mutation of user or conference data appends
// exactly one, in the same transaction. The Backup Service ships these.
struct ChangeRecord {
  int64_t seq = 0;  // strictly increasing
  int64_t at_ms = 0;
  std::string module;     // "user", "conference", "cms"
  std::string home_pool;  // the pool homing the data
  std::string key;        // e.g. the user's URI
  std::string op;         // "upsert" or "delete"
  std::string payload;    // JSON of the new value ("" for delete)
};

// Finds a provisioned user by user part and domain: what the SIP side needs of the
// store (a Store's FindUser, or a cache in front of it).
using UserLookup = std::function<Result<std::optional<UserRecord>>(const std::string& user, const std::string& domain)>;

// A server's membership lease in its pool (soft state: no change-log record). A
// server is live while now < expires_at_ms.
struct LeaseRecord {
  std::string server_id;
  std::string pool;
  int64_t renewed_at_ms = 0;
  int64_t expires_at_ms = 0;
};

// The JSON form of a user, as the change log carries it.
std::string UserPayloadJson(const UserRecord& user);

// ---- User data -------------------------------------------------------------------
// Rows are owned by a provisioned user (the "owner", an address of record such as
// "sip:alice@example.com") and carry the owner's home pool, so a paired pool can
// hold another pool's rows beside its own.

// One entry of an owner's contact list.
struct ContactRecord {
  std::string owner;                // "sip:alice@example.com"
  std::string contact;              // "sip:bob@example.com"
  std::string display_name;         // may be empty
  std::vector<std::string> groups;  // names of the owner's groups (each must exist)
  std::string home_pool;            // set by the store: the owner's home pool
  int64_t updated_at_ms = 0;        // set by the store
};

// A named group of an owner's contact list.
struct ContactGroupRecord {
  std::string owner;
  std::string name;
  std::string home_pool;      // set by the store
  int64_t created_at_ms = 0;  // set by the store
};

// The owner's presence note ("In meetings all day").
struct PresenceNoteRecord {
  std::string owner;
  std::string note;           // "" when none was ever set (or it was cleared)
  std::string home_pool;
  int64_t updated_at_ms = 0;  // 0 when never set
};

// Who may see an owner's presence:
//   kAllowContacts ("allow-contacts", the default): the owner's contacts and the allow list;
//   kAllowAll ("allow-all"): everyone;
//   kAllowListed ("allow-listed"): only the allow list.
// The block list wins over everything, except that owners always see themselves.
enum class PrivacyPolicy { kAllowContacts, kAllowAll, kAllowListed };
std::string_view PrivacyPolicyName(PrivacyPolicy policy);
std::optional<PrivacyPolicy> ParsePrivacyPolicy(std::string_view name);

// Allow and block entries are addresses of record ("sip:bob@example.com") or
// domains ("example.com", matching every user of that domain).
struct PrivacySettings {
  std::string owner;
  PrivacyPolicy policy = PrivacyPolicy::kAllowContacts;
  std::vector<std::string> allow;
  std::vector<std::string> block;
  std::string home_pool;
  int64_t updated_at_ms = 0;  // 0 when never set (defaults)
};

// A change of privacy settings; absent fields keep their current value.
struct PrivacyUpdate {
  std::optional<PrivacyPolicy> policy;
  std::optional<std::vector<std::string>> allow;
  std::optional<std::vector<std::string>> block;
};

// Everything presence authorization needs about one owner, read in one go.
struct PresencePolicy {
  std::string owner;
  PrivacySettings privacy;
  std::vector<std::string> contacts;  // the owner's contact URIs, sorted

  // Whether `watcher` (an address of record as normalized by the admin API:
  // "sip:user@domain", lower-case domain) may see the owner's presence.
  bool Allows(std::string_view watcher) const;
  // Whether the block list names `watcher` (its URI or its domain); never the owner.
  // Lets presence answer a blocked watcher differently from one merely not allowed.
  bool Blocks(std::string_view watcher) const;
};

// ---- Conference data ---------------------------------------------------------------

// "open": everyone joins directly; "attendees-only" (the default): the organizer and
// invited attendees join directly, others wait in the lobby; "organizer-admits":
// everyone but the organizer waits in the lobby.
enum class LobbyPolicy { kOpen, kOrganizerAdmits, kAttendeesOnly };
std::string_view LobbyPolicyName(LobbyPolicy policy);
std::optional<LobbyPolicy> ParseLobbyPolicy(std::string_view name);

enum class MeetingState { kScheduled, kCancelled };
std::string_view MeetingStateName(MeetingState state);
std::optional<MeetingState> ParseMeetingState(std::string_view name);

// A scheduled meeting. Homed in its organizer's home pool.
struct MeetingRecord {
  std::string id;         // 16 lower-case hex digits, chosen by the caller (random)
  std::string organizer;  // a provisioned user
  std::string home_pool;  // set by the store: the organizer's home pool
  std::string subject;
  int64_t start_ms = 0;   // Unix time, milliseconds; end_ms > start_ms
  int64_t end_ms = 0;
  std::vector<std::string> attendees;  // addresses of record
  std::string pin;                     // dial-in PIN, 4 to 12 digits
  LobbyPolicy lobby = LobbyPolicy::kAttendeesOnly;
  MeetingState state = MeetingState::kScheduled;  // CreateMeeting always stores kScheduled
  int64_t created_ms = 0;  // set by the store
  int64_t updated_ms = 0;  // set by the store
};

// A change of a scheduled meeting; absent fields keep their current value.
struct MeetingUpdate {
  std::optional<std::string> subject;
  std::optional<int64_t> start_ms;
  std::optional<int64_t> end_ms;
  std::optional<std::vector<std::string>> attendees;
  std::optional<std::string> pin;
  std::optional<LobbyPolicy> lobby;
};

// Which meetings ListMeetings returns; unset fields match everything.
struct MeetingFilter {
  std::optional<std::string> organizer;
  std::optional<std::string> home_pool;
};

// A file uploaded to a meeting (slides, handouts), without its bytes.
struct ContentInfo {
  std::string meeting_id;
  std::string name;    // a file name: no '/', '\\' or control characters, not "." or ".."
  int64_t size = 0;    // set by the store from the bytes
  std::string sha256;  // lower-case hex of the bytes, computed by the caller
  std::string home_pool;     // set by the store: the meeting's home pool
  int64_t uploaded_ms = 0;   // set by the store
};

struct ContentRecord {
  ContentInfo info;
  std::string bytes;
};

// ---- Change-log keys ---------------------------------------------------------------
// One key names one row, so applying a key's newest record reproduces that row.
// Owners are addresses of record, which never contain '#'; meeting ids are hex.
//   module "user":       "<owner>"                   the user (UserPayloadJson)
//                        "<owner>#contact:<contact>" one contact-list entry
//                        "<owner>#group:<name>"      one contact group
//                        "<owner>#note"              the presence note
//                        "<owner>#privacy"           the privacy settings
//   module "conference": "meeting:<id>"              one meeting (cancel is an upsert)
//                        "content:<id>/<name>"       one content file (payload has
//                                                    sha256 and content_base64)
// op is "upsert" (payload = the full new row as JSON) or "delete" (payload "").
std::string ContactChangeKey(std::string_view owner, std::string_view contact);
std::string ContactGroupChangeKey(std::string_view owner, std::string_view name);
std::string PresenceNoteChangeKey(std::string_view owner);
std::string PrivacyChangeKey(std::string_view owner);
std::string MeetingChangeKey(std::string_view id);
std::string ContentChangeKey(std::string_view meeting_id, std::string_view name);

// The JSON rows the change log carries (and the admin API returns, minus bytes).
std::string ContactPayloadJson(const ContactRecord& contact);
std::string ContactGroupPayloadJson(const ContactGroupRecord& group);
std::string PresenceNotePayloadJson(const PresenceNoteRecord& note);
std::string PrivacyPayloadJson(const PrivacySettings& privacy);
std::string MeetingPayloadJson(const MeetingRecord& meeting);
// Content metadata only (what the admin API lists).
std::string ContentInfoJson(const ContentInfo& info);
// The change-log payload of a content file: the metadata plus "content_base64".
std::string ContentPayloadJson(const ContentInfo& info, std::string_view bytes);

// Whether `text` is well-formed UTF-8. The store refuses other text (the change
// log is JSON); the admin API checks its inputs with it first.
bool IsValidUtf8(std::string_view text);
// Whether `name` is acceptable as a content file name (see ContentInfo::name).
bool IsValidContentName(std::string_view name);


// ---- Replication (the Backup Service) -----------------------------------------------
// A pool's change log is shipped to its paired pool per module ("user", "conference",
// "cms"). The partner applies each record's row verbatim (times and home pool as the
// payload says) without logging it again, so nothing echoes back.

// One row as a snapshot (initial sync) or a digest sees it: its change-log key, its
// home pool and its payload (the JSON an "upsert" record of that key would carry).
// CMS versions: key "version:<N zero-padded to 12 digits>", home_pool "", payload
// {"version","published_at_ms","document"} (CmsVersionPayloadJson).
struct ReplicatedRow {
  std::string key;
  std::string home_pool;
  std::string payload;
};
std::string CmsVersionChangeKey(int64_t version);
std::string CmsVersionPayloadJson(const CmsVersionRecord& record);

// Consecutive rows of a snapshot as they travel to the partner: JSON text, an array
// of [table, column values...] in key order (store/replication.cc has the details).
// Columns rather than payloads: an initial sync moves millions of rows, and writing
// and parsing a JSON object per row was most of its cost.
struct SnapshotChunk {
  std::string json;
  int64_t rows = 0;
};

// The newest record of one module in the change log (seq 0 when it never had any).
struct ChangeLogHead {
  int64_t seq = 0;
  int64_t at_ms = 0;
};

// What this pool's store has applied of a partner's change log, for one module.
struct ImportProgress {
  std::string source_pool;
  std::string module;
  int64_t applied_seq = 0;        // the highest source seq applied (0: nothing yet)
  int64_t applied_at_ms = 0;      // local time of the last apply
  int64_t source_at_ms = 0;       // at_ms of the newest applied record
  int64_t snapshot_seq = 0;       // > 0 while a snapshot taken at that seq is being applied
};

// What the paired pool acknowledged having applied of this pool's change log.
struct ExportProgress {
  std::string partner_pool;
  std::string module;
  int64_t acked_seq = 0;
  int64_t acked_at_ms = 0;
};

// A named lease held by one server at a time (e.g. "backup:pool1.example.com").
struct NamedLease {
  std::string name;
  std::string holder;  // a server id
  int64_t expires_at_ms = 0;
};

// Count and SHA-256 (lower-case hex) of "<key>\n<payload>\n" over rows in key order.
struct RowsDigest {
  int64_t rows = 0;
  std::string sha256;
};

// ---- Soft state (pool takeover) -------------------------------------------------
// One registration (key: the AOR), subscription (key: "<Call-ID> <our tag>") or
// publication set (key: the AOR) as its owner wrote it back. `payload` is the
// owner's JSON; the store does not read it.
struct SoftStateRow {
  std::string pool;
  std::string kind;  // "registration", "subscription", "publication"
  std::string key;
  int routing_group = 0;  // of the user it belongs to: what a new owner loads by
  int64_t expires_at_ms = 0;
  std::string payload;
};
// An upsert of `row`, or (remove) the deletion of the row with its pool, kind and key.
struct SoftStateWrite {
  SoftStateRow row;
  bool remove = false;
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies schema migrations up to the newest version. Safe to call from several
  // processes at once; each migration runs exactly once.
  virtual Status Migrate() = 0;
  // The schema version after Migrate().
  virtual Result<int> SchemaVersion() = 0;

  // The newest CMS version, or nullopt when nothing was ever published.
  virtual Result<std::optional<CmsVersionRecord>> LatestCmsVersion() = 0;
  // Stores `record` as the next version if and only if the newest stored version is
  // `expected_previous` (0 = none). kAlreadyExists if another writer got there first.
  virtual Status AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) = 0;
  // Removes, in one transaction, each of `versions` that is stored with exactly that
  // published_at_ms and document, with its own change-log record: a stale CMS master
  // setting aside versions the new master never got (its caller keeps them apart
  // first). A version stored with another document (the new master's) is left alone.
  virtual Status RemoveCmsVersions(const std::vector<CmsVersionRecord>& versions) = 0;

  // Adds every user or none (one transaction, one change-log entry each).
  // kAlreadyExists names the first URI already provisioned.
  virtual Status AddUsers(const std::vector<UserRecord>& users) = 0;
  // kNotFound if the URI is not provisioned.
  virtual Status RemoveUser(const std::string& uri) = 0;
  virtual Result<std::optional<UserRecord>> FindUser(const std::string& username, const std::string& domain) = 0;
  virtual Result<std::vector<UserRecord>> ListUsers() = 0;

  // ---- User data. Every mutation is one transaction appending one change-log
  // record (module "user"); a failed one leaves neither row nor record. An owner
  // that is not provisioned is kNotFound; text that is not UTF-8 kInvalidArgument.

  // Adds or replaces one contact-list entry. kFailedPrecondition names a group the
  // owner does not have; kInvalidArgument if the contact is the owner.
  virtual Status UpsertContact(const ContactRecord& contact) = 0;
  // kNotFound if the owner has no such contact.
  virtual Status RemoveContact(const std::string& owner, const std::string& contact) = 0;
  // Sorted by contact URI.
  virtual Result<std::vector<ContactRecord>> ListContacts(const std::string& owner) = 0;

  // kAlreadyExists if the owner already has the group.
  virtual Status AddContactGroup(const std::string& owner, const std::string& name) = 0;
  // kNotFound if the owner has no such group; kFailedPrecondition while contacts are
  // in it (remove them from the group first).
  virtual Status RemoveContactGroup(const std::string& owner, const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<ContactGroupRecord>> ListContactGroups(const std::string& owner) = 0;

  // Sets (or with "" clears) the presence note.
  virtual Status SetPresenceNote(const std::string& owner, const std::string& note) = 0;
  virtual Result<PresenceNoteRecord> GetPresenceNote(const std::string& owner) = 0;

  // Applies `update` to the current settings (the defaults if none) and returns the result.
  virtual Result<PrivacySettings> UpdatePrivacy(const std::string& owner, const PrivacyUpdate& update) = 0;
  // The defaults (allow-contacts, empty lists) when never set.
  virtual Result<PrivacySettings> GetPrivacy(const std::string& owner) = 0;
  // Privacy settings and contact URIs from one consistent read, for the SIP path.
  virtual Result<PresencePolicy> GetPresencePolicy(const std::string& owner) = 0;

  // ---- Conference data. Mutations append one record each (module "conference").

  // Stores a new meeting (state scheduled) and returns it as stored. kAlreadyExists
  // if the id is taken (pick another), kNotFound if the organizer is not
  // provisioned, kInvalidArgument for a bad id, PIN, subject or times.
  virtual Result<MeetingRecord> CreateMeeting(const MeetingRecord& meeting) = 0;
  // kNotFound for an unknown id; kFailedPrecondition for a cancelled meeting.
  virtual Result<MeetingRecord> UpdateMeeting(const std::string& id, const MeetingUpdate& update) = 0;
  // Marks the meeting cancelled (kept, with its content). kFailedPrecondition if it
  // already is.
  virtual Result<MeetingRecord> CancelMeeting(const std::string& id) = 0;
  virtual Result<std::optional<MeetingRecord>> GetMeeting(const std::string& id) = 0;
  // Sorted by start time, then id.
  virtual Result<std::vector<MeetingRecord>> ListMeetings(const MeetingFilter& filter) = 0;

  // Adds or replaces a content file of a meeting and returns what was stored
  // (size, home pool and upload time filled in). The caller computes info.sha256. kNotFound for an unknown meeting,
  // kFailedPrecondition for a cancelled one, kInvalidArgument for a bad name.
  virtual Result<ContentInfo> PutContent(const ContentInfo& info, std::string_view bytes) = 0;
  virtual Result<std::optional<ContentRecord>> GetContent(const std::string& meeting_id, const std::string& name) = 0;
  // Sorted by name. kNotFound for an unknown meeting.
  virtual Result<std::vector<ContentInfo>> ListContent(const std::string& meeting_id) = 0;

  // Change-log entries with seq > `after_seq`, oldest first, at most `limit`.
  virtual Result<std::vector<ChangeRecord>> ReadChanges(int64_t after_seq, int limit) = 0;

  // ---- Replication. Modules are "user", "conference" and "cms". AppendCmsVersion
  // also appends a "cms" record (key CmsVersionChangeKey, home_pool "").

  // Change-log entries of one module with seq > `after_seq`, oldest first, at most `limit`.
  virtual Result<std::vector<ChangeRecord>> ReadModuleChanges(std::string_view module, int64_t after_seq,
                                                              int limit) = 0;
  // The module's newest record. Pruning keeps each module's newest record, so this
  // survives it.
  virtual Result<ChangeLogHead> ModuleHead(std::string_view module) = 0;

  // Applies a partner's records (one module, from `source_pool`, oldest first) in one
  // transaction: records with seq <= the applied seq are skipped (so a resent batch
  // is harmless), every other one writes ("upsert") or removes ("delete") its row
  // exactly as the payload says, without a local change-log record, and the import
  // progress advances to the last seq. kInvalidArgument, and nothing applied, if a
  // record has another module, an unknown key kind or a payload that does not parse.
  virtual Result<ImportProgress> ApplyChanges(std::string_view source_pool, std::string_view module,
                                              const std::vector<ChangeRecord>& batch) = 0;

  // Calls `sink` with the rows of `module` homed in `home_pool` (for "cms": every
  // version, home_pool ignored) whose key is in [key_from, key_to) ("" = unbounded),
  // in key order, in chunks of at most `chunk_rows`, all from one consistent read;
  // returns the module's head seq as of that read. Stops at the first failing sink.
  virtual Result<int64_t> ScanRows(std::string_view module, std::string_view home_pool, std::string_view key_from,
                                   std::string_view key_to, int chunk_rows,
                                   const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) = 0;
  // What ScanRows gives for the whole key range, as the snapshot chunks a partner
  // applies: at most `chunk_rows` rows each and, unless one row is larger, not much
  // more than `chunk_bytes` of text. Returns the module's head seq as of the read.
  virtual Result<int64_t> ScanSnapshot(std::string_view module, std::string_view home_pool, int chunk_rows,
                                       size_t chunk_bytes, const std::function<Status(SnapshotChunk&&)>& sink) = 0;
  // Applies one chunk of a partner's snapshot (`chunk_json` as ScanSnapshot gives it,
  // in one transaction, no change-log records). Every row is checked first: of the
  // module, homed in `home_pool`, in key order, well-formed (kInvalidArgument and
  // nothing applied otherwise). The first chunk first removes every row of `module`
  // homed in `home_pool` (CMS versions are never removed) and records snapshot_seq in
  // the import progress; the last chunk sets applied_seq to `snapshot_seq` and clears
  // snapshot_seq. A chunk may hold rows whose parent (user, meeting) comes in a later
  // chunk.
  virtual Result<ImportProgress> ApplySnapshotChunk(std::string_view source_pool, std::string_view module,
                                                    std::string_view home_pool, int64_t snapshot_seq, bool first,
                                                    bool last, std::string_view chunk_json) = 0;
  virtual Result<std::vector<ImportProgress>> ListImportProgress() = 0;

  // Records that `partner_pool` applied this pool's `module` records up to
  // `acked_seq` (never moves backwards) and prunes those records from the change log,
  // keeping the module's newest record.
  virtual Status RecordExportAck(std::string_view partner_pool, std::string_view module, int64_t acked_seq,
                                 int64_t now_ms) = 0;
  virtual Result<std::vector<ExportProgress>> ListExportProgress() = 0;

  // Takes the named lease for `holder` until `expires_at_ms` if it is free, expired
  // at `now_ms`, or already held by `holder`; returns the lease as it stands after
  // the call (holder == `holder` when taken). Atomic across servers.
  virtual Result<NamedLease> TryAcquireNamedLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                                  int64_t expires_at_ms) = 0;
  // Drops the lease if `holder` holds it.
  virtual Status ReleaseNamedLease(std::string_view name, std::string_view holder) = 0;

  // Small per-pool settings ("backup.stopped" = "true"); nullopt when never set.
  virtual Status SetSetting(std::string_view key, std::string_view value) = 0;
  virtual Result<std::optional<std::string>> GetSetting(std::string_view key) = 0;

  // Pool membership: insert or extend this server's lease; drop it on a clean stop;
  // every lease of a pool (live or expired; the caller compares with its clock).
  virtual Status RenewLease(const LeaseRecord& lease) = 0;
  virtual Status ReleaseLease(const std::string& server_id) = 0;
  virtual Result<std::vector<LeaseRecord>> ListLeases(const std::string& pool) = 0;

  // ---- Soft state. Registrations, subscriptions and publications of a pool, written
  // back by the server that owns them so that the server taking over a routing group
  // can load them. Not user data: no change-log record (the Backup Service never
  // ships them).

  // Applies a batch of writes (upserts and removals) in one transaction.
  virtual Status WriteSoftState(const std::vector<SoftStateWrite>& batch) = 0;
  // The unexpired rows (expires_at_ms > now_ms) of `pool` in the given routing groups.
  virtual Result<std::vector<SoftStateRow>> LoadSoftState(std::string_view pool, const std::vector<int>& groups,
                                                          int64_t now_ms) = 0;
  // Removes the rows of `pool` that expired at or before `now_ms`; returns how many.
  virtual Result<int64_t> DeleteExpiredSoftState(std::string_view pool, int64_t now_ms) = 0;
};

// The setting that, while not empty, refuses persistent changes (user data,
// conference data, users) for the users homed in `home_pool`, saying why: set on a
// pool being failed over (until it is failed back) and on a pool failing another's
// users back. The Backup Service still applies what the partner ships.
std::string PersistentChangesRefusedKey(std::string_view home_pool);

// The digest of what ScanRows gives for the same arguments (backup verification).
Result<RowsDigest> DigestRows(Store& store, std::string_view module, std::string_view home_pool,
                              std::string_view key_from, std::string_view key_to);

// Opens (creating if needed) a SQLite store at `path` and migrates it.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

// Connects to a PostgreSQL store and migrates it. `dsn` is a libpq connection
// string or URI, multi-host allowed ("host=db1,db2 port=5432,5432 dbname=tandem");
// connections follow a promoted standby (target_session_attrs=read-write unless the
// DSN says otherwise). Options and failure handling: store/postgres_store.h.
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& dsn);

}  // namespace tandem

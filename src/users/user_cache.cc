#include "users/user_cache.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include <spdlog/spdlog.h>

#include "common/page_resource.h"

namespace tandem {

namespace {

constexpr std::string_view kUserModule = "user";

}  // namespace

UserCache::UserCache(Store& store, UserCacheOptions options)
    : store_(store),
      options_(options),
      pages_(std::make_unique<PageResource>()),
      pool_(pages_.get()),
      newer_(&pool_),
      older_(&pool_) {}

UserCache::~UserCache() { Stop(); }

void UserCache::Start() {
  // The first poll before returning: lookups are served from the cache from now on.
  Status first = Refresh();
  LogPoll(first, /*was_failing=*/false);
  thread_ = std::thread([this, failing = !first] { Loop(failing); });
}

void UserCache::LogPoll(const Status& polled, bool was_failing) {
  // Logged when polls start and stop failing, not every interval.
  if (!polled && !was_failing) {
    spdlog::warn("users: cannot read the user change log (users are looked up in the store meanwhile): {}",
                 polled.error().message);
  } else if (polled && was_failing) {
    spdlog::info("users: the user change log is readable again");
  }
}

void UserCache::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void UserCache::Loop(bool failing) {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, options_.poll_interval, [this] { return stopping_; })) {
    lock.unlock();
    Status polled = Refresh();
    LogPoll(polled, failing);
    failing = !polled;
    lock.lock();
  }
}

Result<std::optional<UserRecord>> UserCache::Find(const std::string& user, const std::string& domain) {
  uint64_t epoch;
  {
    std::lock_guard lock(mu_);
    if (current_) {
      const KeyView key{user, domain};
      for (const Map* half : {&newer_, &older_}) {
        if (auto found = half->find(key); found != half->end()) {
          ++hits_;
          return std::optional<UserRecord>(RecordOf(found->first, found->second));
        }
      }
    }
    epoch = epoch_;
  }
  auto found = store_.FindUser(user, domain);
  if (!found || !found->has_value()) return found;
  std::lock_guard lock(mu_);
  if (current_ && epoch == epoch_) InsertLocked(**found);
  return found;
}

void UserCache::InsertLocked(const UserRecord& user) {
  const std::string_view fields[] = {user.uri,     user.home_pool,    user.ha1_md5,
                                     user.ha1_sha256, user.ha1_md5_full, user.ha1_sha256_full};
  Entry entry{.text = std::pmr::string(&pool_), .created_at_ms = user.created_at_ms};
  size_t length = 0;
  for (std::string_view field : fields) length += field.size();
  if (length > UINT16_MAX) return;  // not a record we provisioned: looked up each time
  entry.text.reserve(length);
  for (size_t i = 0; i < std::size(fields); ++i) {
    entry.text.append(fields[i]);
    entry.ends[i] = static_cast<uint16_t>(entry.text.size());
  }
  // First in, first out by halves: a steady set of up to twice the capacity stays
  // (no churn from moving users between the halves), a larger one cycles.
  if (newer_.size() >= options_.capacity) older_ = std::exchange(newer_, Map(&pool_));
  newer_.insert_or_assign(Key{std::pmr::string(user.username, &pool_), std::pmr::string(user.domain, &pool_)},
                          std::move(entry));
}

UserRecord UserCache::RecordOf(const Key& key, const Entry& entry) {
  std::string_view text = entry.text;
  auto field = [&](size_t i) {
    size_t begin = i == 0 ? 0 : entry.ends[i - 1];
    return std::string(text.substr(begin, entry.ends[i] - begin));
  };
  return UserRecord{.uri = field(0),
                    .username = std::string(key.user),
                    .domain = std::string(key.domain),
                    .home_pool = field(1),
                    .ha1_md5 = field(2),
                    .ha1_sha256 = field(3),
                    .ha1_md5_full = field(4),
                    .ha1_sha256_full = field(5),
                    .created_at_ms = entry.created_at_ms};
}

Status UserCache::Refresh() {
  std::lock_guard refresh_lock(refresh_mu_);
  auto failed = [this](const Error& error) -> Status {
    std::lock_guard lock(mu_);
    DropAllLocked();
    current_ = false;
    return std::unexpected(error);
  };
  auto head = store_.ModuleHead(kUserModule);
  if (!head) return failed(head.error());
  auto progress = store_.ListImportProgress();
  if (!progress) return failed(progress.error());
  std::vector<ImportMark> imports;
  for (const ImportProgress& p : *progress) {
    if (p.module == kUserModule) imports.push_back({p.source_pool, p.applied_seq, p.snapshot_seq});
  }
  std::sort(imports.begin(), imports.end(),
            [](const ImportMark& a, const ImportMark& b) { return a.source_pool < b.source_pool; });

  int64_t seen;
  {
    std::lock_guard lock(mu_);
    // Not serving (first poll, or the last one failed), or a partner's users were
    // imported: start over from what was just read. Lookups that read the store
    // before now cannot insert (the epoch moves).
    if (!current_ || imports != imports_) {
      DropAllLocked();
      current_ = true;
      seen_seq_ = head->seq;
      imports_ = std::move(imports);
      return OkStatus();
    }
    if (head->seq == seen_seq_) return OkStatus();
    seen = seen_seq_;
  }
  auto changes = store_.ReadModuleChanges(kUserModule, seen, options_.max_changes_per_poll);
  if (!changes) return failed(changes.error());
  std::lock_guard lock(mu_);
  if (changes->size() >= static_cast<size_t>(options_.max_changes_per_poll)) {
    DropAllLocked();  // too many to go through: everything up to the head is covered
    seen_seq_ = head->seq;
    return OkStatus();
  }
  for (const ChangeRecord& change : *changes) {
    // A user's row ("sip:alice@example.com") or their data ("<owner>#<part>"):
    // either way the owner is read again, which is cheap and never misses a user row.
    DropLocked(std::string_view(change.key).substr(0, change.key.find('#')));
    seen_seq_ = std::max(seen_seq_, change.seq);
  }
  seen_seq_ = std::max(seen_seq_, head->seq);
  return OkStatus();
}

void UserCache::DropAllLocked() {
  newer_.clear();
  older_.clear();
  ++epoch_;
}

void UserCache::DropLocked(std::string_view uri) {
  // Users are provisioned as "sip:<user>@<domain>" (users/user_service.cc).
  size_t at = uri.rfind('@');
  if (!uri.starts_with("sip:") || at == std::string_view::npos) return DropAllLocked();
  const KeyView key{uri.substr(4, at - 4), uri.substr(at + 1)};
  if (auto found = newer_.find(key); found != newer_.end()) newer_.erase(found);
  if (auto found = older_.find(key); found != older_.end()) older_.erase(found);
  ++epoch_;
}

uint64_t UserCache::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

size_t UserCache::size() const {
  std::lock_guard lock(mu_);
  return newer_.size() + older_.size();
}

}  // namespace tandem

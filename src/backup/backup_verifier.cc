#include "backup/backup_verifier.h"

#include <future>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "backup/backup_link.h"
#include "backup/backup_shipper.h"
#include "common/hash.h"

namespace tandem {

BackupVerifier::BackupVerifier(VerifyOptions options, Store& store, const Pairing& pairing, std::string secret)
    : options_(options), store_(store), pairing_(pairing), secret_(std::move(secret)), home_pool_(pairing.local->fqdn) {}

Result<nlohmann::json> BackupVerifier::RemoteDigests(const std::string& module, const std::vector<RangeDigest>& ranges) {
  nlohmann::json body{{"home_pool", home_pool_}, {"ranges", nlohmann::json::array()}};
  for (const RangeDigest& range : ranges) body["ranges"].push_back({range.from, range.to});
  std::string text = body.dump();
  return CallPartner(pairing_, secret_, "POST", "/backup/digest", {{"module", module}, {"sha256", Sha256Hex(text)}},
                     text, options_.peer_timeout);
}

Result<nlohmann::json> BackupVerifier::VerifyLocalRows(const std::string& module) {
  auto deadline = std::chrono::steady_clock::now() + options_.catch_up_timeout;
  while (true) {
    // The digest belongs to a sequence only if the module's head did not move
    // while it was computed.
    auto head = store_.ModuleHead(module);
    if (!head) return std::unexpected(head.error());
    // Both pools digest at once: each takes seconds for millions of rows.
    auto remote_digest = std::async(std::launch::async, [&] { return RemoteDigests(module, {{"", "", {}}}); });
    auto local = DigestRows(store_, module, home_pool_, "", "");
    auto head_after = store_.ModuleHead(module);
    auto remote = remote_digest.get();
    if (!local) return std::unexpected(local.error());
    if (!head_after) return std::unexpected(head_after.error());
    if (!remote) return std::unexpected(remote.error());
    int64_t applied = remote->value("applied_seq", int64_t{0});
    // Records set aside as divergent never ship: a copy that has all the others is
    // as current as it can be.
    auto skip = store_.GetSetting(SkipThroughSettingKey(module));
    if (!skip) return std::unexpected(skip.error());
    bool only_skipped_left = skip->has_value() && head->seq <= std::atoll((*skip)->c_str());
    if (head->seq == head_after->seq && (applied == head->seq || only_skipped_left)) {
      const auto& digest = (*remote)["digests"].at(0);
      nlohmann::json result{{"module", module},
                            {"home_pool", module == kCmsModule ? "" : home_pool_},
                            {"source", home_pool_},
                            {"copy", pairing_.partner->fqdn},
                            {"seq", head->seq},
                            {"rows", local->rows},
                            {"copy_rows", digest.value("rows", int64_t{0})}};
      if (digest.value("sha256", "") == local->sha256) {
        result["consistent"] = true;
        result["differing_keys"] = nlohmann::json::array();
        return result;
      }
      auto keys = DifferingKeys(module, std::max(local->rows, digest.value("rows", int64_t{0})));
      if (!keys) return std::unexpected(keys.error());
      result["consistent"] = false;
      result["differing_keys"] = *keys;
      return result;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kTimeout,
                       fmt::format("the copy of {} on pool {} did not reach sequence {} of pool {} (it has applied "
                                   "{}); check `tandem backup status`, or stop writes and verify again",
                                   module, pairing_.partner->fqdn, head_after->seq, home_pool_, applied));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the shipper is catching up
  }
}

Result<std::vector<std::string>> BackupVerifier::DifferingKeys(const std::string& module, int64_t rows) {
  // About 64 ranges, cut at the source's keys; the first starts at "" and the last
  // ends at "" so the copy's extra rows fall into some range too.
  const int per_range = static_cast<int>(std::max<int64_t>(1000, rows / 64 + 1));
  std::vector<std::string> starts{""};
  int64_t seen = 0;
  auto scanned = store_.ScanRows(module, home_pool_, "", "", per_range, [&](std::vector<ReplicatedRow>&& chunk) {
    if (seen > 0 && !chunk.empty()) starts.push_back(chunk.front().key);
    seen += static_cast<int64_t>(chunk.size());
    return OkStatus();
  });
  if (!scanned) return std::unexpected(scanned.error());
  std::vector<RangeDigest> ranges;
  for (size_t i = 0; i < starts.size(); ++i) {
    RangeDigest range{starts[i], i + 1 < starts.size() ? starts[i + 1] : "", {}};
    auto digest = DigestRows(store_, module, home_pool_, range.from, range.to);
    if (!digest) return std::unexpected(digest.error());
    range.digest = *digest;
    ranges.push_back(std::move(range));
  }
  auto remote = RemoteDigests(module, ranges);
  if (!remote) return std::unexpected(remote.error());
  const auto& digests = (*remote)["digests"];
  std::vector<std::string> keys;
  for (size_t i = 0; i < ranges.size() && keys.size() < options_.max_reported_keys; ++i) {
    if (i < digests.size() && digests[i].value("sha256", "") == ranges[i].digest.sha256) continue;
    auto differing = DifferingKeysIn(module, ranges[i].from, ranges[i].to);
    if (!differing) return std::unexpected(differing.error());
    for (std::string& key : *differing) {
      if (keys.size() < options_.max_reported_keys) keys.push_back(std::move(key));
    }
  }
  return keys;
}

Result<std::vector<std::string>> BackupVerifier::DifferingKeysIn(const std::string& module, const std::string& from,
                                                                 const std::string& to) {
  std::map<std::string, std::string> local;  // key -> sha256 of payload
  auto scanned = store_.ScanRows(module, home_pool_, from, to, 5000, [&](std::vector<ReplicatedRow>&& chunk) {
    for (const ReplicatedRow& row : chunk) local[row.key] = Sha256Hex(row.payload);
    return OkStatus();
  });
  if (!scanned) return std::unexpected(scanned.error());
  auto remote = CallPartner(pairing_, secret_, "GET", "/backup/keys",
                            {{"module", module}, {"home_pool", home_pool_}, {"from", from}, {"to", to}}, "",
                            options_.peer_timeout);
  if (!remote) return std::unexpected(remote.error());
  std::vector<std::string> differing;
  for (const auto& row : (*remote)["rows"]) {
    std::string key = row.at(0).get<std::string>();
    auto mine = local.find(key);
    if (mine == local.end() || mine->second != row.at(1).get<std::string>()) differing.push_back(key);
    if (mine != local.end()) local.erase(mine);
  }
  for (const auto& [key, unused] : local) differing.push_back(key);  // missing from the copy
  std::sort(differing.begin(), differing.end());
  return differing;
}

}  // namespace tandem

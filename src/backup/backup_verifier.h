// `tandem backup verify`: compares the rows a pool is the source of (for one module,
// the rows homed in it; for the CMS, every version) with the partner's copy. Both
// sides digest their rows (store DigestRows); the comparison counts only when the
// partner has applied exactly the source's head sequence, so a copy that is merely
// behind is waited for rather than reported. When the digests differ, the key space
// is cut into ranges (by the source's keys), ranges are compared by digest, and the
// rows of differing ranges are compared key by key.
//
// Thread-safety: one verifier per call; borrows the store.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backup/pairing.h"
#include "common/error.h"
#include "store/store.h"

namespace tandem {

struct VerifyOptions {
  std::chrono::milliseconds catch_up_timeout{10000};  // waiting for the copy to reach the source's head
  std::chrono::milliseconds peer_timeout{30000};
  size_t max_reported_keys = 100;
};

class BackupVerifier {
 public:
  BackupVerifier(VerifyOptions options, Store& store, const Pairing& pairing, std::string secret);

  // {"module","home_pool","source","copy","consistent","seq","rows","differing_keys"}
  // for the rows of `module` this pool is the source of. An error when the copy
  // cannot be reached or does not catch up within the timeout.
  Result<nlohmann::json> VerifyLocalRows(const std::string& module);

 private:
  struct RangeDigest {
    std::string from, to;
    RowsDigest digest;
  };
  Result<nlohmann::json> RemoteDigests(const std::string& module, const std::vector<RangeDigest>& ranges);
  Result<std::vector<std::string>> DifferingKeys(const std::string& module, int64_t rows);
  Result<std::vector<std::string>> DifferingKeysIn(const std::string& module, const std::string& from,
                                                   const std::string& to);

  const VerifyOptions options_;
  Store& store_;
  const Pairing& pairing_;
  const std::string secret_;
  std::string home_pool_;
};

}  // namespace tandem

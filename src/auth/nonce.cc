#include "auth/nonce.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>

#include "common/error.h"

namespace tandem {
namespace {

constexpr size_t kStampBytes = 8;
constexpr size_t kUniqueBytes = 16;  // instance(8) || counter(8)
constexpr size_t kMacBytes = 32;  // HMAC-SHA256
constexpr size_t kKeyBytes = kStampBytes + kUniqueBytes;
constexpr size_t kNonceBytes = kKeyBytes + kMacBytes;         // 56
constexpr size_t kEncodedLength = (kNonceBytes * 8 + 5) / 6;  // 75, unpadded
constexpr size_t kPaddedLength = (kNonceBytes + 2) / 3 * 4;   // 76
constexpr size_t kGeneratedSecretBytes = 32;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  // Failure means the OS cannot provide entropy: nothing safe to do but stop.
  TANDEM_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) == 1);
  return out;
}

uint64_t RandomU64() {
  uint64_t value = 0;
  TANDEM_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof(value)) == 1);
  return value;
}

void AppendBigEndian(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((value >> shift) & 0xff));
}

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// Decodes exactly one nonce's worth of base64url; false on anything else.
bool DecodeNonce(std::string_view text, std::string* bytes) {
  if (text.size() != kEncodedLength) return false;
  std::string padded;
  padded.reserve(kPaddedLength);
  for (char c : text) {
    if (!IsBase64UrlChar(c)) return false;
    padded.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
  }
  while (padded.size() < kPaddedLength) padded.push_back('=');
  std::array<unsigned char, kPaddedLength> out{};
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(padded.data()),
                          static_cast<int>(padded.size()));
  if (n < static_cast<int>(kNonceBytes)) return false;
  bytes->assign(reinterpret_cast<const char*>(out.data()), kNonceBytes);
  return true;
}

}  // namespace

std::string_view NonceStatusName(NonceStatus status) {
  switch (status) {
    case NonceStatus::kValid:
      return "valid";
    case NonceStatus::kStale:
      return "stale";
    case NonceStatus::kInvalid:
      return "invalid";
    case NonceStatus::kReplayed:
      return "replayed";
  }
  return "invalid";
}

void NonceManager::MacContextFree::operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }

NonceManager::NonceManager(NonceManagerOptions options, const Clock& clock)
    : options_(std::move(options)), clock_(clock), secret_(options_.secret), instance_(RandomU64()) {
  if (secret_.empty()) secret_ = RandomBytes(kGeneratedSecretBytes);
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  TANDEM_CHECK(hmac != nullptr);
  mac_.reset(EVP_MAC_CTX_new(hmac));
  EVP_MAC_free(hmac);  // the context keeps its own reference
  TANDEM_CHECK(mac_ != nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  TANDEM_CHECK(EVP_MAC_init(mac_.get(), reinterpret_cast<const unsigned char*>(secret_.data()), secret_.size(),
                            params) == 1);
}

NonceManager::TimestampMs NonceManager::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch())
      .count();
}

void NonceManager::Mac(std::string_view stamp_and_unique, std::string_view realm, unsigned char* out) const {
  std::lock_guard<std::mutex> lock(mac_mu_);
  EVP_MAC_CTX* ctx = mac_.get();
  size_t length = 0;
  // A null key re-initialises with the key already set.
  TANDEM_CHECK(EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1);
  TANDEM_CHECK(EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(stamp_and_unique.data()),
                              stamp_and_unique.size()) == 1);
  TANDEM_CHECK(EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(realm.data()), realm.size()) == 1);
  TANDEM_CHECK(EVP_MAC_final(ctx, out, &length, kMacBytes) == 1);
  TANDEM_CHECK(length == kMacBytes);
}

std::string NonceManager::Issue(std::string_view realm) {
  std::string bytes;
  bytes.reserve(kNonceBytes);
  AppendBigEndian(static_cast<uint64_t>(NowMs()), &bytes);
  AppendBigEndian(instance_, &bytes);
  AppendBigEndian(next_counter_.fetch_add(1, std::memory_order_relaxed), &bytes);
  bytes.resize(kNonceBytes);
  Mac(std::string_view(bytes).substr(0, kKeyBytes), realm, reinterpret_cast<unsigned char*>(bytes.data() + kKeyBytes));
  return Base64UrlEncode(bytes);
}

bool NonceManager::Authenticate(std::string_view nonce, std::string_view realm, Verified* verified) const {
  std::string bytes;
  if (!DecodeNonce(nonce, &bytes)) return false;
  std::string_view view(bytes);
  std::array<unsigned char, kMacBytes> expected{};
  Mac(view.substr(0, kKeyBytes), realm, expected.data());
  if (CRYPTO_memcmp(expected.data(), view.data() + kKeyBytes, kMacBytes) != 0) return false;
  uint64_t stamp = 0;
  for (size_t i = 0; i < kStampBytes; ++i) {
    stamp = (stamp << 8) | static_cast<unsigned char>(view[i]);
  }
  verified->timestamp_ms = static_cast<TimestampMs>(stamp);
  static_assert(sizeof(Verified::key) == kKeyBytes && sizeof(NonceKey) == kKeyBytes);
  std::copy_n(view.data(), kKeyBytes, verified->key.data());
  return true;
}

NonceStatus NonceManager::AgeStatus(TimestampMs timestamp, TimestampMs now) const {
  const TimestampMs skew_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.max_clock_skew).count();
  const TimestampMs lifetime_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.lifetime).count();
  if (timestamp > now && timestamp - now > skew_ms) return NonceStatus::kInvalid;
  if (now > timestamp && now - timestamp > lifetime_ms) return NonceStatus::kStale;
  return NonceStatus::kValid;
}

NonceStatus NonceManager::Verify(std::string_view nonce, std::string_view realm, Verified* verified) const {
  Verified decoded;
  if (!Authenticate(nonce, realm, &decoded)) return NonceStatus::kInvalid;
  if (verified != nullptr) *verified = decoded;
  return AgeStatus(decoded.timestamp_ms, NowMs());
}

void NonceManager::EvictLocked(TimestampMs now) {
  const TimestampMs lifetime_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.lifetime).count();
  while (!by_age_.empty() && now - by_age_.top().first > lifetime_ms) {
    forgotten_up_to_ = std::max(forgotten_up_to_, by_age_.top().first);
    highest_nc_.erase(by_age_.top().second);
    by_age_.pop();
  }
}

NonceStatus NonceManager::VerifyAndRecordCount(std::string_view nonce, std::string_view realm,
                                               uint32_t nc) {
  Verified verified;
  if (!Authenticate(nonce, realm, &verified)) return NonceStatus::kInvalid;
  return RecordCount(verified, nc);
}

NonceStatus NonceManager::RecordCount(const Verified& verified, uint32_t nc) {
  const TimestampMs timestamp = verified.timestamp_ms;
  const NonceKey& key = verified.key;
  const TimestampMs now = NowMs();
  NonceStatus status = AgeStatus(timestamp, now);
  if (status != NonceStatus::kValid) return status;

  std::lock_guard<std::mutex> lock(mu_);
  EvictLocked(now);
  auto it = highest_nc_.find(key);
  if (it != highest_nc_.end()) {
    if (nc <= it->second) return NonceStatus::kReplayed;
    it->second = nc;
    return NonceStatus::kValid;
  }
  if (timestamp <= forgotten_up_to_) return NonceStatus::kStale;
  if (nc == 0) return NonceStatus::kReplayed;
  const size_t cap = std::max<size_t>(options_.max_tracked_nonces, 1);
  while (highest_nc_.size() >= cap) {
    forgotten_up_to_ = std::max(forgotten_up_to_, by_age_.top().first);
    highest_nc_.erase(by_age_.top().second);
    by_age_.pop();
  }
  if (timestamp <= forgotten_up_to_) return NonceStatus::kStale;
  highest_nc_.emplace(key, nc);
  by_age_.emplace(timestamp, key);
  return NonceStatus::kValid;
}

size_t NonceManager::tracked_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return highest_nc_.size();
}

}  // namespace tandem

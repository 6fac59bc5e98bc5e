#include "common/hash.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fmt/format.h>

#include "common/error.h"
#include "common/file_util.h"

namespace tandem {
namespace {

std::string ToHex(const unsigned char* bytes, unsigned int length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(size_t{length} * 2, '0');
  for (unsigned int i = 0; i < length; ++i) {
    hex[2 * i] = kDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return hex;
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  TANDEM_CHECK(EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) == 1);
  return ToHex(digest, length);
}

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  TANDEM_CHECK(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                    reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length) != nullptr);
  return ToHex(mac, length);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  TANDEM_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) == 1);
  return ToHex(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<unsigned int>(bytes));
}

Result<std::string> LoadOrCreateSecretFile(const std::string& path) {
  auto existing = ReadFile(path);
  if (existing) {
    std::string secret = std::move(*existing);
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' || secret.back() == ' ')) {
      secret.pop_back();
    }
    if (secret.empty()) return MakeError(ErrorCode::kInvalidArgument, fmt::format("secret file {} is empty", path));
    return secret;
  }
  if (existing.error().code != ErrorCode::kNotFound) return std::unexpected(existing.error());
  std::string secret = RandomHex(32);
  if (auto written = WriteFileAtomically(path, secret + "\n", 0600); !written) return std::unexpected(written.error());
  return secret;
}

}  // namespace tandem

// Cryptographic helpers used across modules (content checksums, backup batch
// checksums and signatures, admin and pairing secrets), thin wrappers over OpenSSL.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <string>
#include <string_view>

#include "common/error.h"

namespace tandem {

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);
// Lower-case hex HMAC-SHA-256 of `message` under `key`.
std::string HmacSha256Hex(std::string_view key, std::string_view message);
// Compares two strings in time independent of where they differ (secrets, MACs).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// `bytes` random bytes from the system's CSPRNG, as lower-case hex.
std::string RandomHex(size_t bytes);
// The secret stored in the file at `path` (trailing whitespace trimmed), creating
// the file with a fresh 256-bit secret (mode 0600) when it does not exist.
// kInvalidArgument if the file exists but is empty.
Result<std::string> LoadOrCreateSecretFile(const std::string& path);

}  // namespace tandem

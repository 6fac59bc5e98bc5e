#include "backup/batch_codec.h"

#include <zstd.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "common/hash.h"

namespace tandem {
namespace {

// Level 1: batches are shipped continuously and snapshot chunks by the hundred;
// speed matters more than ratio.
constexpr int kCompressionLevel = 1;

EncodedBody Compress(std::string_view text) {
  EncodedBody body;
  body.sha256 = Sha256Hex(text);
  body.compressed.resize(ZSTD_compressBound(text.size()));
  size_t size = ZSTD_compress(body.compressed.data(), body.compressed.size(), text.data(), text.size(),
                              kCompressionLevel);
  TANDEM_CHECK(!ZSTD_isError(size));
  body.compressed.resize(size);
  return body;
}

Result<std::string> Decompress(std::string_view compressed, std::string_view sha256, size_t max_bytes) {
  unsigned long long size = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return MakeError(ErrorCode::kCorruption, "the batch is not a zstd frame");
  }
  if (size > max_bytes) {
    return MakeError(ErrorCode::kCorruption, fmt::format("the batch would decompress to {} bytes", size));
  }
  std::string text(size, '\0');
  size_t got = ZSTD_decompress(text.data(), text.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(got) || got != size) return MakeError(ErrorCode::kCorruption, "the batch does not decompress");
  if (!ConstantTimeEquals(Sha256Hex(text), sha256)) {
    return MakeError(ErrorCode::kCorruption, "the batch does not match its checksum");
  }
  return text;
}

Result<nlohmann::json> DecompressArray(std::string_view compressed, std::string_view sha256, size_t max_bytes) {
  auto text = Decompress(compressed, sha256, max_bytes);
  if (!text) return std::unexpected(text.error());
  auto parsed = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array()) return MakeError(ErrorCode::kCorruption, "the batch is not JSON");
  return parsed;
}

}  // namespace

EncodedBody EncodeChanges(const std::vector<ChangeRecord>& changes) {
  nlohmann::json items = nlohmann::json::array();
  for (const ChangeRecord& c : changes) items.push_back({c.seq, c.at_ms, c.module, c.home_pool, c.key, c.op, c.payload});
  return Compress(items.dump());
}

EncodedBody EncodeSnapshotChunk(std::string_view chunk_json) { return Compress(chunk_json); }

Result<std::vector<ChangeRecord>> DecodeChanges(std::string_view compressed, std::string_view sha256,
                                                size_t max_bytes) {
  auto items = DecompressArray(compressed, sha256, max_bytes);
  if (!items) return std::unexpected(items.error());
  std::vector<ChangeRecord> changes;
  changes.reserve(items->size());
  for (const auto& item : *items) {
    bool well_formed = item.is_array() && item.size() == 7 && item[0].is_number_integer() &&
                       item[1].is_number_integer();
    for (size_t i = 2; well_formed && i < 7; ++i) well_formed = item[i].is_string();
    if (!well_formed) return MakeError(ErrorCode::kCorruption, "a change record of the batch is malformed");
    changes.push_back({item[0].get<int64_t>(), item[1].get<int64_t>(), item[2].get<std::string>(),
                       item[3].get<std::string>(), item[4].get<std::string>(), item[5].get<std::string>(),
                       item[6].get<std::string>()});
  }
  return changes;
}

Result<std::string> DecodeSnapshotChunk(std::string_view compressed, std::string_view sha256, size_t max_bytes) {
  return Decompress(compressed, sha256, max_bytes);
}

namespace {

std::string SignedText(std::string_view path, const BatchParams& params) {
  std::string text(path);
  for (const auto& [name, value] : params) {
    if (name == "sig") continue;
    text += '\n';
    text += name;
    text += '=';
    text += value;
  }
  return text;
}

}  // namespace

void SignParams(std::string_view secret, std::string_view path, BatchParams& params) {
  params["sig"] = HmacSha256Hex(secret, SignedText(path, params));
}

bool VerifyParams(std::string_view secret, std::string_view path, const BatchParams& params) {
  auto sig = params.find("sig");
  return sig != params.end() && ConstantTimeEquals(sig->second, HmacSha256Hex(secret, SignedText(path, params)));
}

std::string PathWithQuery(std::string_view path, const BatchParams& params) {
  std::string url(path);
  char separator = '?';
  for (const auto& [name, value] : params) {
    url += separator;
    url += UrlEncode(name);
    url += '=';
    url += UrlEncode(value);
    separator = '&';
  }
  return url;
}

}  // namespace tandem

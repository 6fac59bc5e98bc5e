// The wire form of what the Backup Service sends to the paired pool: a batch of
// change records or a chunk of a snapshot, as zstd-compressed JSON, with a SHA-256
// checksum of the uncompressed content and an HMAC signature (the per-pairing
// secret) over every request parameter, the checksum included. A corrupted batch
// fails the checksum and a forged one the signature: either is rejected whole.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "store/store.h"

namespace tandem {

// Request parameters (sent as the query string); "sig" is added by SignParams.
using BatchParams = std::map<std::string, std::string>;

// The compressed body and the checksum to send with it (parameter "sha256").
struct EncodedBody {
  std::string compressed;
  std::string sha256;  // of the uncompressed JSON
};

EncodedBody EncodeChanges(const std::vector<ChangeRecord>& changes);
// A snapshot chunk's text (Store::ScanSnapshot) as it is: the store reads it back.
EncodedBody EncodeSnapshotChunk(std::string_view chunk_json);

// Decompresses `compressed` (refusing more than `max_bytes` once decompressed),
// checks it against `sha256` and parses it. kCorruption when any of that fails.
Result<std::vector<ChangeRecord>> DecodeChanges(std::string_view compressed, std::string_view sha256,
                                                size_t max_bytes);
// The same for a snapshot chunk, whose text Store::ApplySnapshotChunk parses (and refuses).
Result<std::string> DecodeSnapshotChunk(std::string_view compressed, std::string_view sha256, size_t max_bytes);

// Adds "sig": HMAC-SHA-256 under `secret` of the path and every other parameter.
void SignParams(std::string_view secret, std::string_view path, BatchParams& params);
// Whether params["sig"] is the signature SignParams would add.
bool VerifyParams(std::string_view secret, std::string_view path, const BatchParams& params);

// "path?k=v&k=v" with URL-encoded values.
std::string PathWithQuery(std::string_view path, const BatchParams& params);

}  // namespace tandem

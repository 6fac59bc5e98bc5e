// The Central Management Store document: one immutable, versioned snapshot of what
// the deployment is (today the topology; later also the user directory and the DR
// routing state). The master pool's store keeps every version; every server keeps
// the newest one it has seen as a local replica file.
//
// Thread-safety: a plain value type.
#pragma once

#include <cstdint>
#include <string>

#include "common/clock.h"
#include "common/error.h"

namespace tandem {

struct CmsDocument {
  int64_t version = 0;  // 0: not published yet (bootstrapped from a topology file)
  int64_t published_at_ms = 0;
  std::string topology_file;  // name of the file it was published from, for messages
  std::string topology_toml;  // the topology text, byte for byte as published

  std::string ToJson() const;
  static Result<CmsDocument> FromJson(std::string_view json);
};

}  // namespace tandem

// PIDF (RFC 3863) for presence: reading the basic status and note out of a
// published document, and writing the composed document a watcher receives.
//
// Reading is a deliberately small scan for <basic> and <note> elements (any
// namespace prefix) rather than a full XML parser: tandem only needs those two
// values from client documents, and the scan is bounded and never throws.
// Thread-safety: free functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem {

enum class BasicStatus { kOpen, kClosed };

struct PresenceState {
  BasicStatus basic = BasicStatus::kClosed;
  std::string note;  // may be empty
};

// The <basic> status of the first tuple that has one, and the first <note>.
// nullopt if the document has no <basic> element at all.
std::optional<PresenceState> ParsePidf(std::string_view document);

// A PIDF document for `entity` ("sip:alice@example.com") with one tuple.
std::string BuildPidf(std::string_view entity, const PresenceState& state);

// Escapes &, <, >, " and ' for XML text and attributes.
std::string XmlEscape(std::string_view text);

}  // namespace tandem

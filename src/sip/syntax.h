// Lexical building blocks of the SIP grammar (RFC 3261 section 25): character
// classes, linear white space, quoted strings, tokens, comma-separated lists,
// %-escaping and a few number parsers. Every SIP parser in this module is built on
// these; they never allocate unless they return a std::string.
//
// Thread-safety: stateless functions over caller-owned text; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sip/small_vector.h"

namespace tandem::sip {

// Character classes, as bits of a 256-entry table.
enum CharClass : uint16_t {
  kAlnum = 1 << 0,
  kToken = 1 << 1,            // token characters
  kUnreserved = 1 << 2,       // alphanum / mark
  kUserChar = 1 << 3,         // unreserved / user-unreserved (escapes handled apart)
  kPasswordChar = 1 << 4,     // unreserved / & = + $ ,
  kParamChar = 1 << 5,        // param-unreserved / unreserved
  kHeaderChar = 1 << 6,       // hnv-unreserved / unreserved
  kHostChar = 1 << 7,         // alphanum - .
  kWordChar = 1 << 8,         // Call-ID "word" characters
  kUricChar = 1 << 9,         // reserved / unreserved / % (absoluteURI opaque part)
  kHexDigit = 1 << 10,
  kSchemeChar = 1 << 11,      // ALPHA / DIGIT / + - .
  kListSpecial = 1 << 12,     // characters that matter when splitting a list: " < > ,
};

namespace internal {
struct CharTable {
  uint16_t bits[256];
};
extern const CharTable kCharTable;
}  // namespace internal

inline bool IsClass(char c, uint16_t cls) {
  return (internal::kCharTable.bits[static_cast<unsigned char>(c)] & cls) != 0;
}
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }
inline bool IsAlpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }
// White space as it appears in an unfolded header value (folding is turned into
// spaces by the parser; CR and LF are accepted too for values that were not).
inline bool IsLws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
inline char ToLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

inline bool ContainsAnyOf(std::string_view s, char a, char b) {
  for (char c : s) {
    if (c == a || c == b) return true;
  }
  return false;
}

// True when every character of `s` is in `cls` and `s` is not empty.
bool AllOfClass(std::string_view s, uint16_t cls);
inline bool IsToken(std::string_view s) { return AllOfClass(s, kToken); }

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i] && ToLowerAscii(a[i]) != ToLowerAscii(b[i])) return false;
  }
  return true;
}
bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix);

std::string_view TrimLws(std::string_view s);
// The first CR or LF in [begin, end), or end. Vectorized where SSE2 is available.
const char* FindLineBreak(const char* begin, const char* end);

// Index of the first non-LWS character at or after `pos` (s.size() if none).
size_t SkipLws(std::string_view s, size_t pos);

// Parses a quoted-string starting at s[pos] == '"'. Returns the index just past the
// closing quote, or nullopt if it is unterminated or holds a raw CR/LF.
std::optional<size_t> ScanQuotedString(std::string_view s, size_t pos);
// Removes the surrounding quotes of a quoted-string and resolves quoted-pairs.
// Text that is not quoted is returned as is.
std::string Unquote(std::string_view quoted);
// `quoted` without its quotes when it is a quoted-string, else `quoted` itself; no
// quoted-pair processing (enough for values that never hold a backslash).
std::string_view StripQuotes(std::string_view quoted);
// Wraps `text` in quotes, escaping '"' and '\'.
std::string Quote(std::string_view text);

// Splits a comma-separated header value into its elements, ignoring commas inside
// quoted strings and <...>. Elements are trimmed. Returns false (and leaves `out`
// partly filled) on an empty element, an unterminated quote or an unbalanced '<'.
template <size_t N>
bool SplitCommaList(std::string_view value, SmallVector<std::string_view, N>* out);
// The same, one element at a time: call Next() until it returns false; check ok().
class CommaListIterator {
 public:
  explicit CommaListIterator(std::string_view value) : value_(value) {}
  bool Next(std::string_view* element);
  bool ok() const { return ok_; }

 private:
  std::string_view value_;
  size_t pos_ = 0;
  bool ok_ = true;
  bool done_ = false;
};

// %-escaping (RFC 3261 section 19.1.2).
bool HasValidEscapes(std::string_view s);  // every '%' is followed by two hex digits
// Decodes %XX sequences; an invalid sequence is kept as is.
std::string Unescape(std::string_view s);
// Escapes every character outside `allowed` (a CharClass mask) as %XX.
std::string Escape(std::string_view s, uint16_t allowed);
// True when `s` is made of characters of `cls` and valid %XX escapes only.
bool IsEscapedClass(std::string_view s, uint16_t cls);

// Decimal parsing of untrusted text: 1*DIGIT only (leading zeros allowed), no sign,
// no white space; nullopt on overflow of the target type.
std::optional<uint32_t> ParseUint32(std::string_view s);
std::optional<uint64_t> ParseUint64(std::string_view s);

}  // namespace tandem::sip

// ---- template implementation ----
namespace tandem::sip {
template <size_t N>
bool SplitCommaList(std::string_view value, SmallVector<std::string_view, N>* out) {
  CommaListIterator it(value);
  std::string_view element;
  while (it.Next(&element)) out->push_back(element);
  return it.ok();
}
}  // namespace tandem::sip

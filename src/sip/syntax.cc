#include "sip/syntax.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tandem::sip {
namespace internal {
namespace {

constexpr void Mark(CharTable& t, std::string_view chars, uint16_t cls) {
  for (char c : chars) t.bits[static_cast<unsigned char>(c)] |= cls;
}

constexpr CharTable BuildTable() {
  CharTable t{};
  constexpr std::string_view kDigits = "0123456789";
  constexpr std::string_view kLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  constexpr std::string_view kMark = "-_.!~*'()";
  for (std::string_view s : {kDigits, kLetters}) {
    Mark(t, s, kAlnum | kToken | kUnreserved | kUserChar | kPasswordChar | kParamChar |
                   kHeaderChar | kHostChar | kWordChar | kUricChar | kSchemeChar);
  }
  Mark(t, "-.!%*_+`'~", kToken);
  Mark(t, kMark, kUnreserved | kUserChar | kPasswordChar | kParamChar | kHeaderChar | kUricChar);
  Mark(t, "&=+$,;?/", kUserChar);
  Mark(t, "&=+$,", kPasswordChar);
  Mark(t, "[]/:&+$", kParamChar);
  Mark(t, "[]/?:+$", kHeaderChar);
  Mark(t, "-.", kHostChar);
  Mark(t, "-.!%*_+`'~()<>:\\\"/[]?{}", kWordChar);
  Mark(t, ";/?:@&=+$,%[]", kUricChar);
  Mark(t, "0123456789abcdefABCDEF", kHexDigit);
  Mark(t, "+-.", kSchemeChar);
  Mark(t, "\"<>,", kListSpecial);
  return t;
}

}  // namespace

constinit const CharTable kCharTable = BuildTable();

}  // namespace internal

bool AllOfClass(std::string_view s, uint16_t cls) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsClass(c, cls)) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::string_view TrimLws(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && IsLws(s[b])) ++b;
  while (e > b && IsLws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

const char* FindLineBreak(const char* begin, const char* end) {
  const char* p = begin;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(chunk, cr), _mm_cmpeq_epi8(chunk, lf)));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  for (; p < end; ++p) {
    if (*p == '\r' || *p == '\n') return p;
  }
  return end;
}

size_t SkipLws(std::string_view s, size_t pos) {
  while (pos < s.size() && IsLws(s[pos])) ++pos;
  return pos;
}

std::optional<size_t> ScanQuotedString(std::string_view s, size_t pos) {
  // pos points at the opening quote.
  for (size_t i = pos + 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return std::nullopt;
      char next = s[i + 1];
      if (next == '\r' || next == '\n') return std::nullopt;
      ++i;
      continue;
    }
    if (c == '\r' || c == '\n') {
      // Only folding (CRLF followed by WSP) may appear; the parser has already
      // turned folds into spaces, so a raw line break here is malformed.
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string_view StripQuotes(std::string_view quoted) {
  if (quoted.size() >= 2 && quoted.front() == '"' && quoted.back() == '"') {
    return quoted.substr(1, quoted.size() - 2);
  }
  return quoted;
}

std::string Unquote(std::string_view quoted) {
  if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') {
    return std::string(quoted);
  }
  std::string out;
  out.reserve(quoted.size() - 2);
  for (size_t i = 1; i + 1 < quoted.size(); ++i) {
    if (quoted[i] == '\\' && i + 2 < quoted.size()) ++i;
    out.push_back(quoted[i]);
  }
  return out;
}

std::string Quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

bool CommaListIterator::Next(std::string_view* element) {
  if (done_) return false;
  bool in_angle = false;
  size_t start = pos_;
  for (size_t i = pos_; i < value_.size(); ++i) {
    while (i < value_.size() && !IsClass(value_[i], kListSpecial)) ++i;
    if (i == value_.size()) break;
    char c = value_[i];
    if (c == '"' && !in_angle) {
      std::optional<size_t> end = ScanQuotedString(value_, i);
      if (!end) {
        ok_ = false;
        done_ = true;
        return false;
      }
      i = *end - 1;
    } else if (c == '<') {
      if (in_angle) {
        ok_ = false;
        done_ = true;
        return false;
      }
      in_angle = true;
    } else if (c == '>') {
      in_angle = false;
    } else if (c == ',' && !in_angle) {
      *element = TrimLws(value_.substr(start, i - start));
      pos_ = i + 1;
      if (element->empty()) {
        ok_ = false;
        done_ = true;
        return false;
      }
      return true;
    }
  }
  done_ = true;
  if (in_angle) {
    ok_ = false;
    return false;
  }
  *element = TrimLws(value_.substr(start));
  if (element->empty()) {
    // An empty value has no elements; a trailing comma is an error.
    if (start != 0) ok_ = false;
    return false;
  }
  return true;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ToLowerAscii(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

bool HasValidEscapes(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return false;
      if (!IsClass(s[i + 1], kHexDigit) || !IsClass(s[i + 2], kHexDigit)) return false;
      i += 2;
    }
  }
  return true;
}

bool IsEscapedClass(std::string_view s, uint16_t cls) {
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || !IsClass(s[i + 1], kHexDigit) ||
          !IsClass(s[i + 2], kHexDigit)) {
        return false;
      }
      i += 2;
    } else if (!IsClass(c, cls)) {
      return false;
    }
  }
  return true;
}

std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string Escape(std::string_view s, uint16_t allowed) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (IsClass(c, allowed)) {
      out.push_back(c);
    } else {
      auto u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

std::optional<uint64_t> ParseUint64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<uint32_t> ParseUint32(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > UINT32_MAX) return std::nullopt;
  }
  return static_cast<uint32_t>(v);
}

}  // namespace tandem::sip

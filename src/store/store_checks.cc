#include "store/store_checks.h"

#include <openssl/evp.h>

#include <algorithm>

#include <boost/archive/iterators/base64_from_binary.hpp>
#include <boost/archive/iterators/transform_width.hpp>
#include <fmt/format.h>

#include "common/clock.h"

namespace tandem {

using nlohmann::json;

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void AppendJsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const size_t start = out.size();
  bool ascii = true;  // ASCII is UTF-8: no need to check
  out += '"';
  size_t copied = 0;  // text[copied, i) needs no escape
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) ascii = false;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + copied, i - copied);
    copied = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(text.data() + copied, text.size() - copied);
  out += '"';
  if (!ascii && !IsValidUtf8(text)) {
    out.resize(start);
    out += Dump(json(std::string(text)));  // Dump's replacement characters
  }
}

JsonObjectWriter::JsonObjectWriter() {
  out_.reserve(256);  // most payloads: one allocation
  out_ += '{';
}

void JsonObjectWriter::Name(std::string_view name) {
  TANDEM_CHECK(last_name_.empty() || last_name_ < name);  // Dump's order, each name once
  if (!last_name_.empty()) out_ += ',';
  last_name_ = name;
  out_ += '"';
  out_ += name;  // names are identifiers: nothing to escape
  out_ += "\":";
}

JsonObjectWriter& JsonObjectWriter::Text(std::string_view name, std::string_view value) {
  Name(name);
  AppendJsonString(out_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Int(std::string_view name, int64_t value) {
  Name(name);
  out_ += std::to_string(value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::List(std::string_view name, const std::vector<std::string>& values) {
  Name(name);
  out_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out_ += ',';
    AppendJsonString(out_, values[i]);
  }
  out_ += ']';
  return *this;
}

std::string JsonObjectWriter::Finish() {
  out_ += '}';
  return std::move(out_);
}

Result<std::vector<std::string>> ParseStringList(const std::string& text, std::string_view what) {
  if (text == "[]") return std::vector<std::string>();  // most lists: no parser needed
  json parsed = json::parse(text, nullptr, false);
  std::vector<std::string> list;
  if (!parsed.is_array()) return MakeError(ErrorCode::kCorruption, fmt::format("stored {} is not a JSON array", what));
  for (const json& item : parsed) {
    if (!item.is_string()) return MakeError(ErrorCode::kCorruption, fmt::format("stored {} holds a non-string", what));
    list.push_back(item.get<std::string>());
  }
  return list;
}

Status CheckText(std::string_view field, std::string_view value) {
  if (!IsValidUtf8(value)) return MakeError(ErrorCode::kInvalidArgument, fmt::format("{} is not valid UTF-8", field));
  return OkStatus();
}

Status CheckTexts(std::string_view field, const std::vector<std::string>& values) {
  for (const std::string& value : values) {
    if (auto s = CheckText(field, value); !s) return s;
  }
  return OkStatus();
}

std::vector<std::string> WithoutDuplicates(const std::vector<std::string>& list) {
  std::vector<std::string> out;
  for (const std::string& item : list) {
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
  }
  return out;
}

bool IsLowerHex(std::string_view text, size_t length) {
  return text.size() == length && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsPin(std::string_view pin) {
  return pin.size() >= 4 && pin.size() <= 12 &&
         std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Base64(std::string_view bytes) {
  using boost::archive::iterators::base64_from_binary;
  using boost::archive::iterators::transform_width;
  using Encoder = base64_from_binary<transform_width<const char*, 6, 8>>;
  std::string out(Encoder(bytes.data()), Encoder(bytes.data() + bytes.size()));
  out.append((3 - bytes.size() % 3) % 3, '=');
  return out;
}

Result<std::string> DecodeBase64(std::string_view text) {
  // OpenSSL's decoder, not Boost's: it reports bad input instead of throwing.
  auto invalid = [] { return MakeError(ErrorCode::kInvalidArgument, "content_base64 is not valid base64"); };
  if (text.size() % 4 != 0 || text.size() > static_cast<size_t>(INT32_MAX)) return invalid();
  std::string bytes(text.size() / 4 * 3, '\0');
  int decoded = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(bytes.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (decoded < 0) return invalid();
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  bytes.resize(static_cast<size_t>(decoded) - padding);
  // Only the canonical form, so that the row re-encodes to the same payload.
  if (Base64(bytes) != text) return invalid();
  return bytes;
}

Status CheckContentInfo(const ContentInfo& info) {
  if (!IsValidContentName(info.name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a content name must be 1 to 255 bytes of UTF-8 without '/', '\\' or control characters");
  }
  if (!IsLowerHex(info.sha256, 64)) {
    return MakeError(ErrorCode::kInvalidArgument, "the content SHA-256 must be 64 lower-case hex digits");
  }
  return OkStatus();
}

Status CheckMeeting(const MeetingRecord& meeting) {
  auto invalid = [](std::string message) { return MakeError(ErrorCode::kInvalidArgument, std::move(message)); };
  if (!IsLowerHex(meeting.id, 16)) return invalid(fmt::format("meeting id '{}' is not 16 lower-case hex digits", meeting.id));
  if (!IsPin(meeting.pin)) return invalid("the dial-in PIN must be 4 to 12 digits");
  if (meeting.end_ms <= meeting.start_ms) return invalid("a meeting must end after it starts");
  if (auto s = CheckText("the subject", meeting.subject); !s) return s;
  if (auto s = CheckText("the organizer", meeting.organizer); !s) return s;
  return CheckTexts("an attendee", meeting.attendees);
}

Result<MeetingRecord> ApplyMeetingUpdate(std::optional<MeetingRecord> existing, const std::string& id,
                                         const MeetingUpdate& update) {
  if (!existing) return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", id));
  MeetingRecord row = std::move(*existing);
  if (row.state == MeetingState::kCancelled) {
    return MakeError(ErrorCode::kFailedPrecondition, fmt::format("meeting {} is cancelled and cannot change", id));
  }
  if (update.subject) row.subject = *update.subject;
  if (update.start_ms) row.start_ms = *update.start_ms;
  if (update.end_ms) row.end_ms = *update.end_ms;
  if (update.attendees) row.attendees = WithoutDuplicates(*update.attendees);
  if (update.pin) row.pin = *update.pin;
  if (update.lobby) row.lobby = *update.lobby;
  if (auto s = CheckMeeting(row); !s) return std::unexpected(s.error());
  row.updated_ms = std::max(NowUnixMillis(), row.updated_ms);
  return row;
}

}  // namespace tandem

// Checks and small conversions every Store implementation applies the same way
// before it writes, so SQLite and PostgreSQL accept and refuse the same input.
// Thread-safety: free functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "store/store.h"

namespace tandem {

// JSON text that never throws: the stores refuse non-UTF-8 input before this.
std::string Dump(const nlohmann::json& value);
// Appends `text` as a JSON string, byte for byte as Dump writes it (UTF-8 copied,
// '"', '\\' and control characters escaped; text that is not UTF-8 goes through Dump).
// Written by hand for rows written by the million (snapshots, digests): a nlohmann
// value per field cost more than everything else done with the row.
void AppendJsonString(std::string& out, std::string_view text);
// A JSON object written member by member with AppendJsonString, in the order Dump
// writes an object's members (by name), so its text is Dump's of the same object.
class JsonObjectWriter {
 public:
  JsonObjectWriter();
  JsonObjectWriter& Text(std::string_view name, std::string_view value);
  JsonObjectWriter& Int(std::string_view name, int64_t value);
  JsonObjectWriter& List(std::string_view name, const std::vector<std::string>& values);
  std::string Finish();  // the text; the writer is spent

 private:
  void Name(std::string_view name);

  std::string out_;
  std::string_view last_name_;
};
// A stored JSON array of strings; kCorruption if it is not one.
Result<std::vector<std::string>> ParseStringList(const std::string& text, std::string_view what);
// kInvalidArgument naming `field` when the value is not UTF-8.
Status CheckText(std::string_view field, std::string_view value);
Status CheckTexts(std::string_view field, const std::vector<std::string>& values);
// The list without repeated entries, first occurrence kept.
std::vector<std::string> WithoutDuplicates(const std::vector<std::string>& list);
bool IsLowerHex(std::string_view text, size_t length);
bool IsPin(std::string_view pin);  // 4 to 12 digits
// Standard base64 with padding (content bytes in change-log payloads), and back:
// kInvalidArgument unless `text` is exactly what Base64 gives for some bytes.
std::string Base64(std::string_view bytes);
Result<std::string> DecodeBase64(std::string_view text);
// A content file's name and checksum, before it is stored.
Status CheckContentInfo(const ContentInfo& info);
// A meeting's id, PIN, times and texts.
Status CheckMeeting(const MeetingRecord& meeting);

// The meeting `existing` (as read in the writing transaction) with `update` applied
// and checked: kNotFound without one, kFailedPrecondition once it is cancelled.
Result<MeetingRecord> ApplyMeetingUpdate(std::optional<MeetingRecord> existing, const std::string& id,
                                         const MeetingUpdate& update);

}  // namespace tandem

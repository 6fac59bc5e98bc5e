#include "presence/pidf.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace tandem {

namespace {

// Finds the text of the first element whose local name is `name` (any prefix),
// e.g. <basic>, <pidf:basic>, <basic xmlns="...">. Returns nullopt if none.
std::optional<std::string_view> ElementText(std::string_view document, std::string_view name) {
  size_t position = 0;
  while ((position = document.find('<', position)) != std::string_view::npos) {
    size_t tag_start = position + 1;
    size_t tag_end = document.find_first_of(" \t\r\n/>", tag_start);
    if (tag_end == std::string_view::npos) return std::nullopt;
    std::string_view tag = document.substr(tag_start, tag_end - tag_start);
    auto colon = tag.find(':');
    std::string_view local = colon == std::string_view::npos ? tag : tag.substr(colon + 1);
    position = tag_end;
    if (local != name) continue;
    size_t open_end = document.find('>', tag_end);
    if (open_end == std::string_view::npos || document[open_end - 1] == '/') return std::string_view();
    size_t close = document.find("</", open_end);
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view text = document.substr(open_end + 1, close - open_end - 1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    return text;
  }
  return std::nullopt;
}

std::string XmlUnescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '&') {
      out.push_back(text[i]);
      continue;
    }
    static constexpr std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool replaced = false;
    for (const auto& [entity, character] : kEntities) {
      if (text.substr(i).starts_with(entity)) {
        out.push_back(character);
        i += entity.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back('&');
  }
  return out;
}

}  // namespace

std::optional<PresenceState> ParsePidf(std::string_view document) {
  auto basic = ElementText(document, "basic");
  if (!basic) return std::nullopt;
  std::string value(*basic);
  std::transform(value.begin(), value.end(), value.begin(), ::tolower);
  PresenceState state;
  state.basic = value == "open" ? BasicStatus::kOpen : BasicStatus::kClosed;
  if (auto note = ElementText(document, "note")) state.note = XmlUnescape(*note);
  return state;
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string BuildPidf(std::string_view entity, const PresenceState& state) {
  std::string note = state.note.empty() ? "" : fmt::format("    <note>{}</note>\n", XmlEscape(state.note));
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\n"
      "  <tuple id=\"tandem\">\n"
      "    <status><basic>{}</basic></status>\n"
      "{}"
      "  </tuple>\n"
      "</presence>\n",
      XmlEscape(entity), state.basic == BasicStatus::kOpen ? "open" : "closed", note);
}

}  // namespace tandem

#include "sip/message.h"

#include <charconv>
#include <cstring>

#include "sip/syntax.h"

namespace tandem::sip {
namespace {

constexpr std::string_view kVersion = "SIP/2.0";
constexpr std::string_view kCrlf = "\r\n";

// Decimal digits of a non-negative number, for serialization without allocation.
struct Decimal {
  char digits[24];
  size_t size;
  explicit Decimal(uint64_t value) {
    auto result = std::to_chars(digits, digits + sizeof(digits), value);
    size = static_cast<size_t>(result.ptr - digits);
  }
  std::string_view view() const { return std::string_view(digits, size); }
};

}  // namespace

// ---- factories ----

SipMessage SipMessage::NewRequest(std::string_view method, std::string_view request_uri) {
  TANDEM_CHECK(IsToken(method));
  SipMessage m;
  m.buffer_.reserve(method.size() + request_uri.size() + 512);
  m.is_request_ = true;
  m.method_ = m.AppendText(method);
  m.method_id_ = MethodFromName(method);
  m.request_uri_ = m.AppendText(request_uri);
  return m;
}

SipMessage SipMessage::NewResponse(int status_code, std::string_view reason) {
  SipMessage m;
  m.buffer_.reserve(512);
  m.SetStatus(status_code, reason);
  return m;
}

// ---- headers ----

HeaderField SipMessage::header(size_t index) const {
  const Entry& e = headers_[index];
  return HeaderField{View(e.name), View(e.value), e.id};
}

bool SipMessage::NameMatches(const Entry& e, HeaderId id, std::string_view name) const {
  if (id != HeaderId::kUnknown) return e.id == id;
  return e.id == HeaderId::kUnknown && EqualsIgnoreCase(View(e.name), name);
}

size_t SipMessage::FindHeaderIndex(HeaderId id, size_t start) const {
  for (size_t i = start; i < headers_.size(); ++i) {
    if (headers_[i].id == id) return i;
  }
  return npos;
}

size_t SipMessage::FindHeaderIndex(std::string_view name, size_t start) const {
  HeaderId id = HeaderIdFromName(name);
  for (size_t i = start; i < headers_.size(); ++i) {
    if (NameMatches(headers_[i], id, name)) return i;
  }
  return npos;
}

std::optional<std::string_view> SipMessage::FindHeader(HeaderId id) const {
  size_t i = FindHeaderIndex(id);
  if (i == npos) return std::nullopt;
  return View(headers_[i].value);
}

std::optional<std::string_view> SipMessage::FindHeader(std::string_view name) const {
  size_t i = FindHeaderIndex(name);
  if (i == npos) return std::nullopt;
  return View(headers_[i].value);
}

size_t SipMessage::CountHeaders(HeaderId id) const {
  size_t n = 0;
  for (const Entry& e : headers_) n += (e.id == id);
  return n;
}

bool SipMessage::Values(HeaderId id, SmallVector<std::string_view, 8>* out) const {
  bool split = IsListHeader(id);
  for (const Entry& e : headers_) {
    if (e.id != id) continue;
    if (!split) {
      out->push_back(View(e.value));
    } else if (!SplitCommaList(View(e.value), out)) {
      return false;
    }
  }
  return true;
}

bool SipMessage::Values(std::string_view name, SmallVector<std::string_view, 8>* out) const {
  HeaderId id = HeaderIdFromName(name);
  if (id != HeaderId::kUnknown) return Values(id, out);
  // Extension headers: the grammar is unknown, so each line is one value.
  for (const Entry& e : headers_) {
    if (NameMatches(e, id, name)) out->push_back(View(e.value));
  }
  return true;
}

// ---- well-known headers ----

Result<CSeqHeader> SipMessage::CSeq() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kCSeq);
  if (!v) return MakeError(ErrorCode::kNotFound, "no CSeq header");
  return ParseCSeq(*v);
}

Result<ViaHeader> SipMessage::TopVia() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kVia);
  if (!v) return MakeError(ErrorCode::kNotFound, "no Via header");
  CommaListIterator it(*v);
  std::string_view first;
  if (!it.Next(&first)) return MakeError(ErrorCode::kInvalidArgument, "empty Via header");
  return ParseVia(first);
}

size_t SipMessage::ViaCount() const {
  size_t n = 0;
  for (const Entry& e : headers_) {
    if (e.id != HeaderId::kVia) continue;
    CommaListIterator it(View(e.value));
    std::string_view element;
    while (it.Next(&element)) ++n;
  }
  return n;
}

Result<NameAddr> SipMessage::From() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kFrom);
  if (!v) return MakeError(ErrorCode::kNotFound, "no From header");
  return ParseNameAddr(*v);
}

Result<NameAddr> SipMessage::To() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kTo);
  if (!v) return MakeError(ErrorCode::kNotFound, "no To header");
  return ParseNameAddr(*v);
}

std::string_view SipMessage::FromTag() const {
  Result<NameAddr> from = From();
  return from ? from->Tag() : std::string_view();
}

std::string_view SipMessage::ToTag() const {
  Result<NameAddr> to = To();
  return to ? to->Tag() : std::string_view();
}

std::optional<int> SipMessage::MaxForwards() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kMaxForwards);
  if (!v) return std::nullopt;
  Result<int> hops = ParseMaxForwards(*v);
  if (!hops) return std::nullopt;
  return *hops;
}

Result<ContactList> SipMessage::Contacts() const {
  ContactList list;
  for (const Entry& e : headers_) {
    if (e.id != HeaderId::kContact) continue;
    Status s = AppendContacts(View(e.value), &list);
    if (!s) return std::unexpected(s.error());
  }
  return list;
}

Result<std::optional<uint32_t>> SipMessage::Expires() const {
  std::optional<std::string_view> v = FindHeader(HeaderId::kExpires);
  if (!v) return std::optional<uint32_t>();
  Result<uint32_t> seconds = ParseDeltaSeconds(*v);
  if (!seconds) return std::unexpected(seconds.error());
  return std::optional<uint32_t>(*seconds);
}

// ---- mutation ----

SipMessage::Span SipMessage::AppendText(std::string_view text) {
  TANDEM_CHECK(buffer_.size() + text.size() <= UINT32_MAX);
  Span span{static_cast<uint32_t>(buffer_.size()), static_cast<uint32_t>(text.size())};
  buffer_.append(text);
  char* begin = buffer_.data() + span.offset;
  char* end = buffer_.data() + buffer_.size();
  for (char* p = const_cast<char*>(FindLineBreak(begin, end)); p < end; ++p) {
    if (*p == '\r' || *p == '\n') *p = ' ';
  }
  return span;
}

SipMessage::Entry SipMessage::MakeEntry(std::string_view name, std::string_view value) {
  TANDEM_CHECK(IsToken(name));
  Entry e;
  e.name = AppendText(name);
  e.value = AppendText(TrimLws(value));
  e.id = HeaderIdFromName(name);
  return e;
}

void SipMessage::AddHeader(std::string_view name, std::string_view value) {
  headers_.push_back(MakeEntry(name, value));
}

void SipMessage::PrependHeader(std::string_view name, std::string_view value) {
  headers_.insert(0, MakeEntry(name, value));
}

void SipMessage::InsertHeader(size_t index, std::string_view name, std::string_view value) {
  TANDEM_CHECK(index <= headers_.size());
  headers_.insert(index, MakeEntry(name, value));
}

void SipMessage::RemoveHeader(size_t index) {
  TANDEM_CHECK(index < headers_.size());
  headers_.erase(index);
}

size_t SipMessage::RemoveHeaders(HeaderId id) {
  size_t removed = 0;
  for (size_t i = headers_.size(); i-- > 0;) {
    if (headers_[i].id == id) {
      headers_.erase(i);
      ++removed;
    }
  }
  return removed;
}

void SipMessage::SetHeader(HeaderId id, std::string_view value) {
  TANDEM_CHECK(id != HeaderId::kUnknown);
  size_t first = FindHeaderIndex(id);
  if (first == npos) {
    AddHeader(id, value);
    return;
  }
  headers_[first].value = AppendText(TrimLws(value));
  for (size_t i = headers_.size(); i-- > first + 1;) {
    if (headers_[i].id == id) headers_.erase(i);
  }
}

bool SipMessage::RemoveTopValue(HeaderId id) {
  size_t index = FindHeaderIndex(id);
  if (index == npos) return false;
  std::string_view value = View(headers_[index].value);
  CommaListIterator it(value);
  std::string_view first;
  if (!it.Next(&first)) {
    RemoveHeader(index);
    return true;
  }
  size_t consumed = static_cast<size_t>(first.data() + first.size() - value.data());
  std::string_view rest = value.substr(consumed);
  size_t comma = rest.find(',');
  rest = comma == std::string_view::npos ? std::string_view() : TrimLws(rest.substr(comma + 1));
  if (rest.empty()) {
    RemoveHeader(index);
  } else {
    headers_[index].value.offset = static_cast<uint32_t>(rest.data() - buffer_.data());
    headers_[index].value.length = static_cast<uint32_t>(rest.size());
  }
  return true;
}

void SipMessage::SetRequestUri(std::string_view uri) {
  TANDEM_CHECK(is_request_);
  request_uri_ = AppendText(uri);
}

void SipMessage::SetStatus(int status_code, std::string_view reason) {
  TANDEM_CHECK(status_code >= 100 && status_code <= 699);
  is_request_ = false;
  status_code_ = status_code;
  reason_ = AppendText(reason.empty() ? DefaultReasonPhrase(status_code) : reason);
}

void SipMessage::SetBody(std::string_view content_type, std::string_view body) {
  TANDEM_CHECK(buffer_.size() + body.size() <= UINT32_MAX);
  body_ = Span{static_cast<uint32_t>(buffer_.size()), static_cast<uint32_t>(body.size())};
  buffer_.append(body);  // bodies keep their line ends
  if (content_type.empty()) {
    RemoveHeaders(HeaderId::kContentType);
  } else {
    SetHeader(HeaderId::kContentType, content_type);
  }
  if (HasHeader(HeaderId::kContentLength)) {
    SetHeader(HeaderId::kContentLength, Decimal(body.size()).view());
  }
}

// ---- serialization ----

size_t SipMessage::SerializedSize() const {
  size_t size;
  if (is_request_) {
    size = method_.length + 1 + request_uri_.length + 1 + kVersion.size() + 2;
  } else {
    size = kVersion.size() + 1 + 3 + 1 + reason_.length + 2;
  }
  bool has_length = false;
  Decimal body_size(body_.length);
  for (const Entry& e : headers_) {
    if (e.id == HeaderId::kContentLength) {
      if (has_length) continue;
      has_length = true;
      size += e.name.length + 2 + body_size.size + 2;
      continue;
    }
    size += e.name.length + 2 + e.value.length + 2;
  }
  if (!has_length) size += std::string_view("Content-Length: ").size() + body_size.size + 2;
  return size + 2 + body_.length;
}

void SipMessage::AppendTo(std::string* out) const {
  out->reserve(out->size() + SerializedSize());
  if (is_request_) {
    out->append(View(method_)).push_back(' ');
    out->append(View(request_uri_)).push_back(' ');
    out->append(kVersion).append(kCrlf);
  } else {
    int code = status_code_;
    char digits[3] = {static_cast<char>('0' + code / 100 % 10), static_cast<char>('0' + code / 10 % 10),
                      static_cast<char>('0' + code % 10)};
    out->append(kVersion).push_back(' ');
    out->append(digits, 3).push_back(' ');
    out->append(View(reason_)).append(kCrlf);
  }
  bool has_length = false;
  Decimal body_size(body_.length);
  for (const Entry& e : headers_) {
    if (e.id == HeaderId::kContentLength) {
      if (has_length) continue;  // only one, and always the true body size
      has_length = true;
      out->append(View(e.name)).append(": ").append(body_size.view()).append(kCrlf);
      continue;
    }
    out->append(View(e.name)).append(": ").append(View(e.value)).append(kCrlf);
  }
  if (!has_length) out->append("Content-Length: ").append(body_size.view()).append(kCrlf);
  out->append(kCrlf);
  out->append(View(body_));
}

std::string SipMessage::Serialize() const {
  std::string out;
  AppendTo(&out);
  return out;
}

// ---- responses ----

SipMessage BuildResponse(const SipMessage& request, int status_code, std::string_view reason,
                         std::string_view to_tag) {
  SipMessage r;
  size_t copied = 0;
  for (const SipMessage::Entry& e : request.headers_) copied += e.name.length + e.value.length;
  r.buffer_.reserve(copied + to_tag.size() + 512);
  r.SetStatus(status_code, reason);
  for (const SipMessage::Entry& e : request.headers_) {
    switch (e.id) {
      case HeaderId::kVia:
      case HeaderId::kFrom:
      case HeaderId::kCallId:
      case HeaderId::kCSeq:
        r.headers_.push_back(r.MakeEntry(request.View(e.name), request.View(e.value)));
        break;
      case HeaderId::kTimestamp:
        if (status_code == 100) {
          r.headers_.push_back(r.MakeEntry(request.View(e.name), request.View(e.value)));
        }
        break;
      case HeaderId::kTo: {
        SipMessage::Entry entry = r.MakeEntry(request.View(e.name), request.View(e.value));
        if (status_code > 100 && !to_tag.empty()) {
          NameAddr to;
          if (TryParseNameAddr(request.View(e.value), &to) == nullptr && !to.Param("tag").has_value()) {
            r.buffer_.append(";tag=").append(to_tag);
            entry.value.length = static_cast<uint32_t>(r.buffer_.size() - entry.value.offset);
          }
        }
        r.headers_.push_back(entry);
        break;
      }
      default:
        break;
    }
  }
  return r;
}

// ---- request builder ----

std::string AngleAddress(std::string_view address) {
  if (address.find('<') != std::string_view::npos) return std::string(address);
  std::string out;
  out.reserve(address.size() + 2);
  out.append("<").append(address).append(">");
  return out;
}

RequestBuilder::RequestBuilder(std::string_view method, std::string_view request_uri)
    : message_(SipMessage::NewRequest(method, request_uri)) {}

RequestBuilder& RequestBuilder::Via(std::string_view transport, std::string_view sent_by,
                                    std::string_view branch, bool rport) {
  std::string value;
  value.reserve(transport.size() + sent_by.size() + branch.size() + 32);
  value.append("SIP/2.0/").append(transport).append(" ").append(sent_by).append(";branch=").append(branch);
  if (rport) value.append(";rport");
  message_.AddHeader(HeaderId::kVia, value);
  return *this;
}

RequestBuilder& RequestBuilder::MaxForwards(int hops) {
  message_.AddHeader(HeaderId::kMaxForwards, Decimal(static_cast<uint64_t>(hops)).view());
  has_max_forwards_ = true;
  return *this;
}

RequestBuilder& RequestBuilder::From(std::string_view address, std::string_view tag) {
  std::string value = AngleAddress(address);
  if (!tag.empty()) value.append(";tag=").append(tag);
  message_.AddHeader(HeaderId::kFrom, value);
  return *this;
}

RequestBuilder& RequestBuilder::To(std::string_view address, std::string_view tag) {
  std::string value = AngleAddress(address);
  if (!tag.empty()) value.append(";tag=").append(tag);
  message_.AddHeader(HeaderId::kTo, value);
  return *this;
}

RequestBuilder& RequestBuilder::CallId(std::string_view call_id) {
  message_.AddHeader(HeaderId::kCallId, call_id);
  return *this;
}

RequestBuilder& RequestBuilder::CSeq(uint32_t number) {
  std::string value(Decimal(number).view());
  value.append(" ").append(message_.method());
  message_.AddHeader(HeaderId::kCSeq, value);
  return *this;
}

RequestBuilder& RequestBuilder::Contact(std::string_view address) {
  message_.AddHeader(HeaderId::kContact, AngleAddress(address));
  return *this;
}

RequestBuilder& RequestBuilder::Header(std::string_view name, std::string_view value) {
  message_.AddHeader(name, value);
  if (HeaderIdFromName(name) == HeaderId::kMaxForwards) has_max_forwards_ = true;
  return *this;
}

RequestBuilder& RequestBuilder::Header(HeaderId id, std::string_view value) {
  return Header(CanonicalHeaderName(id), value);
}

RequestBuilder& RequestBuilder::Body(std::string_view content_type, std::string_view body) {
  message_.SetBody(content_type, body);
  return *this;
}

SipMessage RequestBuilder::Build() {
  if (!has_max_forwards_) MaxForwards(70);
  return std::move(message_);
}

}  // namespace tandem::sip

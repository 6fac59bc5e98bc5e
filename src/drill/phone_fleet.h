// PhoneFleet: the simulated SIP phones `tandem drill` drives — one per user, many
// users over a few UDP sockets (the registrar keys bindings by address of record and
// Contact, so phones need distinct Contacts, not distinct ports). Each phone behaves
// like a client given every server of both pools (as DNS would give them):
//   - it keeps itself registered: REGISTER with digest (auth/digest.h), follows a 301
//     to the Contacts it names, moves on to the next server when one does not answer,
//     and starts a new round after `retry_interval` while no server registers it;
//   - a server that did not answer lately is tried last, and only briefly
//     (`retry_probe_timeout`), so a dead pool costs little once it is known dead;
//   - it answers every MESSAGE with 200 and remembers which probes reached it.
// The fleet also sends MESSAGE probes and reports, per probe, the final status and
// whether the target phone received it.
//
// The drill tells phones what a real client learns from its connection: that the
// server it registered with died (ServersLost) or signed it out (Reregister).
//
// Thread-safety: one internal thread runs the event loop (Start() to the
// destructor); every public method may be called from any other thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"

namespace tandem {

struct FleetServer {
  std::string id;
  std::string pool;
  std::string address;  // IP literal
  uint16_t sip_port = 0;
};

struct FleetOptions {
  std::string domain;                // the SIP domain: Request-URI of REGISTER, AOR host
  std::vector<FleetServer> servers;  // every server; a 301 Contact names one of them
  int sockets = 8;
  std::chrono::milliseconds attempt_timeout{1000};     // a server that does not answer within this is skipped
  std::chrono::milliseconds retry_probe_timeout{250};  // the same, for a server that did not answer lately
  std::chrono::milliseconds avoid_for{10000};          // how long "lately" lasts
  std::chrono::milliseconds retry_interval{1000};      // between rounds while unregistered
  std::chrono::milliseconds probe_timeout{5000};       // a MESSAGE probe's final answer
  // Requests outstanding per answering server: the phones' offered load follows what
  // the servers answer instead of collapsing into timeouts and retries. A server
  // that stopped answering costs nothing to try, so it gets no limit.
  size_t window_per_server = 128;
  uint32_t expires = 3600;
};

struct PhoneSpec {
  std::string user;  // user part of the AOR
  std::string password;
  std::vector<size_t> servers;  // indexes into FleetOptions::servers, in the order this phone tries them
};

struct PhoneView {
  bool registered = false;
  int registrar = -1;            // index of the server that answered 200
  int64_t registered_at_ms = 0;  // unix ms of that 200
};

struct MessageProbe {
  size_t from = 0;    // phone index (its socket sends; its AOR is the From)
  size_t to = 0;      // phone index (its AOR is the Request-URI)
  size_t server = 0;  // server index the MESSAGE is sent to
};

struct ProbeResult {
  int status = 0;  // final status; 408 when none came within probe_timeout
  bool delivered = false;
  int64_t answered_at_ms = 0;
};

class PhoneFleet {
 public:
  // Binds the sockets on 127.0.0.1 (kIoError if it cannot).
  static Result<std::unique_ptr<PhoneFleet>> Create(FleetOptions options, std::vector<PhoneSpec> phones);
  ~PhoneFleet();
  PhoneFleet(const PhoneFleet&) = delete;
  PhoneFleet& operator=(const PhoneFleet&) = delete;

  // Starts the event loop; every phone starts registering.
  void Start();

  // Phones registered with one of `servers` lose their registration (their
  // connection to it broke) and start registering again at once, trying it last.
  void ServersLost(const std::set<size_t>& servers);
  // These phones refresh their registration now (the server signed them out).
  void Reregister(const std::vector<size_t>& phones);

  std::vector<PhoneView> Snapshot();
  // Sends every probe (paced) and waits for all their outcomes, in order.
  std::vector<ProbeResult> SendMessages(const std::vector<MessageProbe>& probes);

  size_t size() const;

 private:
  struct Impl;
  explicit PhoneFleet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem

// The Backup Service of one server (DESIGN.md §1-3): continuous two-way copy of
// user and conference data between paired pools, and of the CMS from its master
// pool to the standby. It wires the shipper (sending; one server per pool at a
// time) and the link server (receiving; every server), and serves the admin routes
// behind `tandem backup status|sync|verify` and `tandem service start|stop backup`:
//   GET  /backup/status?pool=P          the DESIGN §3 status of pool P's pairing
//   POST /backup/sync?pool=P&module=M   the heads to wait for (the CLI polls status)
//   POST /backup/service?pool=P&action=start|stop
//   POST /backup/verify?pool=P&module=M
//   POST /backup/set-aside?pool=P       divergent records out of the way (failback)
//   POST /backup/resend?pool=P&home=H   a snapshot of H-homed rows to H (failback)
//   GET  /backup/divergent?pool=P       the records set aside, to export
// A request naming another pool is forwarded to it. Between paired pools (signed
// with the pairing secret, no admin token): GET /backup/view (a pool's own view),
// POST /backup/verify_source (verify the rows the answering pool is the source of).
//
// Thread-safety: thread-safe. Owns the shipper's thread (Start/Stop). Borrows the
// store, replica and metrics registry, which must outlive it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "admin/http_server.h"
#include "backup/backup_link_server.h"
#include "backup/backup_shipper.h"
#include "cms/cms_replica.h"
#include "common/metrics.h"
#include "store/store.h"

namespace tandem {

struct BackupServiceOptions {
  ShipperOptions shipper;  // server_id, pool and data_dir are required
  std::string admin_token;  // to forward admin requests to another pool
  std::chrono::milliseconds peer_timeout{5000};
};

class BackupService {
 public:
  BackupService(BackupServiceOptions options, Store& store, CmsReplica& replica, MetricsRegistry& metrics);
  ~BackupService();

  void Start();
  void Stop();
  void RegisterRoutes(HttpServer& http);
  // Whether this server is the one of its pool shipping to the partner.
  bool HoldsLease() const { return shipper_.HoldsLease(); }

 private:
  // The pairing of the pool a request names (default: this one), or the answer to
  // send instead: that pool's own answer (the request forwarded there), or a refusal.
  std::expected<Pairing, HttpResponse> LocalPairingFor(const HttpRequest& request);
  // A signed request from the partner pool, and this pool's pairing; or the refusal.
  std::expected<std::pair<LinkSender, Pairing>, HttpResponse> AuthenticatedPairing(const HttpRequest& request);
  HttpResponse Status(const HttpRequest& request);
  HttpResponse View(const HttpRequest& request);
  HttpResponse Sync(const HttpRequest& request);
  HttpResponse Service(const HttpRequest& request);
  HttpResponse Verify(const HttpRequest& request);
  HttpResponse VerifySource(const HttpRequest& request);
  HttpResponse SetAside(const HttpRequest& request);
  HttpResponse Resend(const HttpRequest& request);
  HttpResponse Divergent(const HttpRequest& request);
  Result<std::string> SecretFor(const Pairing& pairing) const;

  const BackupServiceOptions options_;
  Store& store_;
  CmsReplica& replica_;
  BackupLinkServer link_;
  BackupShipper shipper_;
};

}  // namespace tandem

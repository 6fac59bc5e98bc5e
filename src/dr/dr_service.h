// The server side of `tandem pool failover|failback` (the CLI runs the steps; see
// cli/pool_failover_commands.cc): checking an update against the routing rules as
// this server's CMS replica sees it, and refusing or accepting again persistent
// changes for a home pool's users in a pool's store.
//   GET  /dr/check?action=failover|failback&pool=P&disaster=0|1
//   POST /dr/refuse-changes?pool=S&home=H&state=on|off&reason=...  (forwarded to S)
//   GET  /dr/serving   200 when this server can use its pool's store (the partner
//                      pool's resiliency probe; see resiliency_monitor.h)
// The routing change itself is a CMS publish (POST /cms/routing), where the master
// checks the rules again against its newest version.
//
// Thread-safety: thread-safe (handlers run concurrently). Borrows the store and the
// replica, which must outlive it.
#pragma once

#include <string>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "store/store.h"

namespace tandem {

class DrService {
 public:
  DrService(std::string admin_token, std::string local_pool, Store& store, CmsReplica& replica);
  void RegisterRoutes(HttpServer& http);

 private:
  HttpResponse Check(const HttpRequest& request);
  HttpResponse RefuseChanges(const HttpRequest& request);
  HttpResponse Serving();

  const std::string admin_token_;
  const std::string local_pool_;
  Store& store_;
  CmsReplica& replica_;
};

}  // namespace tandem

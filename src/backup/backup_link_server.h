// The receiving side of the link between paired pools, on every server of a pool:
// applies the change-record batches and snapshot chunks the partner ships (POST
// /backup/apply, /backup/snapshot), tells it how far it got (GET /backup/import),
// and answers its digest questions for `tandem backup verify` (POST /backup/digest,
// GET /backup/keys). These routes need no admin token: a request must instead come
// from the pool's partner, for a module that flows this way, signed with the
// pairing's secret, and a batch must match its checksum. Anything else is refused
// whole, logged and counted, and a bad batch is recorded as the import error that
// `tandem backup status` shows. Applying is idempotent (the store skips sequences
// already applied), so any server may apply and a resent batch is harmless.
//
// Thread-safety: thread-safe (handlers run concurrently). Borrows the store,
// replica and metrics registry, which must outlive it.
#pragma once

#include <string>

#include "admin/http_server.h"
#include "backup/batch_codec.h"
#include "backup/pairing.h"
#include "cms/cms_replica.h"
#include "common/metrics.h"
#include "store/store.h"

namespace tandem {

// Upper bound of one decompressed batch: a 50 MiB content file in base64, and room.
inline constexpr size_t kMaxBatchBytes = size_t{128} << 20;

// The settings key holding the last import error of (source pool, module).
std::string ImportErrorSettingKey(std::string_view source_pool, std::string_view module);

// Who sent a link request: the partner pool, and the module it is about ("" when
// the route is not about one module).
struct LinkSender {
  std::string source_pool;
  std::string module;
};

class BackupLinkServer {
 public:
  BackupLinkServer(std::string local_pool, std::string data_dir, Store& store, CmsReplica& replica,
                 MetricsRegistry& metrics);

  void RegisterRoutes(HttpServer& http);

  // Checks who sent `request` (its query as `params`) and that it may; a refusal is
  // the response to send. With `module_required`, the module must flow from the
  // sender to this pool.
  std::expected<LinkSender, HttpResponse> Authenticate(const HttpRequest& request, const BatchParams& params,
                                                       bool module_required);

 private:
  using Sender = LinkSender;
  HttpResponse ApplyBatch(const HttpRequest& request);
  HttpResponse ApplySnapshot(const HttpRequest& request);
  HttpResponse Progress(const HttpRequest& request);
  HttpResponse Digest(const HttpRequest& request);
  HttpResponse Keys(const HttpRequest& request);
  HttpResponse Fail(const Sender& sender, int status, const std::string& reason);
  void Succeeded(const Sender& sender, size_t bytes, const ImportProgress& progress);

  const std::string local_pool_;
  const std::string data_dir_;
  Store& store_;
  CmsReplica& replica_;
  MetricsRegistry& metrics_;
  Counter* refused_;
};

}  // namespace tandem

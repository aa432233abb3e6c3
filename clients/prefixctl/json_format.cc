#include "clients/prefixctl/json_format.h"

#include "absl/strings/escaping.h"

namespace prefixd::ctl {

std::string FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "STOP";
    case v1::FINISH_REASON_LENGTH:
      return "LENGTH";
    case v1::FINISH_REASON_CANCELLED:
      return "CANCELLED";
    default:
      return "";
  }
}

std::string HexBytes(const std::string& bytes) { return absl::BytesToHexString(bytes); }

nlohmann::ordered_json UsageToJson(const v1::Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens()},
          {"cached_tokens", u.cached_tokens()},
          {"completion_tokens", u.completion_tokens()},
          {"queue_seconds", u.queue_seconds()},
          {"time_to_first_token_seconds", u.time_to_first_token_seconds()},
          {"total_seconds", u.total_seconds()}};
}

nlohmann::ordered_json GenerateResponseToJson(const v1::GenerateResponse& r) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!r.request_id().empty()) j["request_id"] = r.request_id();
  j["token_ids"] =
      nlohmann::ordered_json(std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end()));
  j["text"] = r.text();
  if (r.logprobs_size() > 0) {
    nlohmann::ordered_json logprobs = nlohmann::ordered_json::array();
    for (const v1::TokenLogprob& lp : r.logprobs()) {
      nlohmann::ordered_json top = nlohmann::ordered_json::array();
      for (const v1::TopLogprob& t : lp.top()) {
        top.push_back({{"token_id", t.token_id()}, {"logprob", t.logprob()}});
      }
      logprobs.push_back({{"token_id", lp.token_id()}, {"logprob", lp.logprob()}, {"top", top}});
    }
    j["logprobs"] = std::move(logprobs);
  }
  if (r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    j["finish_reason"] = FinishReasonName(r.finish_reason());
    j["usage"] = UsageToJson(r.usage());
  }
  return j;
}

nlohmann::ordered_json TokenizeResponseToJson(const v1::TokenizeResponse& r) {
  return {{"prompt_text", r.prompt_text()},
          {"token_ids", std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end())}};
}

namespace {

nlohmann::ordered_json BlockCountsToJson(const v1::BlockCounts& b) {
  return {{"total", b.total()},
          {"free", b.free()},
          {"evictable", b.evictable()},
          {"in_use", b.in_use()},
          {"pinned", b.pinned()}};
}

// "device" or "host" (a server from before the host tier: device).
const char* MediumName(v1::Medium medium) { return medium == v1::MEDIUM_HOST ? "host" : "device"; }

}  // namespace

nlohmann::ordered_json CacheStatsToJson(const v1::CacheStats& s) {
  nlohmann::ordered_json namespaces = nlohmann::ordered_json::array();
  for (const v1::NamespaceStats& ns : s.namespaces()) {
    namespaces.push_back({{"name", ns.name()},
                          {"query_tokens", ns.query_tokens()},
                          {"hit_tokens", ns.hit_tokens()},
                          {"hit_rate", ns.hit_rate()},
                          {"cached_blocks", ns.cached_blocks()},
                          {"host_hit_tokens", ns.host_hit_tokens()},
                          {"host_cached_blocks", ns.host_cached_blocks()}});
  }
  nlohmann::ordered_json j = {{"block_size", s.block_size()},
                              {"blocks", BlockCountsToJson(s.blocks())},
                              {"query_tokens", s.query_tokens()},
                              {"hit_tokens", s.hit_tokens()},
                              {"hit_rate", s.hit_rate()},
                              {"evicted_blocks", s.evicted_blocks()},
                              {"inserted_blocks", s.inserted_blocks()},
                              {"hash_collisions", s.hash_collisions()},
                              {"namespaces", namespaces},
                              {"running_requests", s.running_requests()},
                              {"waiting_requests", s.waiting_requests()},
                              {"flushed_blocks", s.flushed_blocks()},
                              {"host_hit_tokens", s.host_hit_tokens()}};
  // The host tier: present only when the server has one.
  if (s.has_host_blocks()) {
    j["host_blocks"] = BlockCountsToJson(s.host_blocks());
    j["demoted_blocks"] = s.demoted_blocks();
    j["promoted_blocks"] = s.promoted_blocks();
    j["host_evicted_blocks"] = s.host_evicted_blocks();
    j["dropped_blocks"] = s.dropped_blocks();
    j["host_bytes_allocated"] = s.host_bytes_allocated();
    j["bytes_to_host"] = s.bytes_to_host();
    j["bytes_to_device"] = s.bytes_to_device();
    j["host_allocation_failures"] = s.host_allocation_failures();
  }
  return j;
}

nlohmann::ordered_json CacheEventToJson(const v1::CacheEvent& e) {
  nlohmann::ordered_json j = {{"sequence", e.sequence()}};
  auto keys = [](const auto& repeated) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const std::string& key : repeated) out.push_back(HexBytes(key));
    return out;
  };
  switch (e.event_case()) {
    case v1::CacheEvent::kStored:
      j["type"] = "stored";
      j["namespace"] = e.stored().namespace_();
      j["parent_key"] = HexBytes(e.stored().parent_key());
      j["block_size"] = e.stored().block_size();
      j["block_keys"] = keys(e.stored().block_keys());
      j["medium"] = MediumName(e.stored().medium());
      break;
    case v1::CacheEvent::kRemoved:
      j["type"] = "removed";
      j["namespace"] = e.removed().namespace_();
      j["block_keys"] = keys(e.removed().block_keys());
      j["medium"] = MediumName(e.removed().medium());
      break;
    case v1::CacheEvent::kSnapshotDone:
      j["type"] = "snapshot_done";
      break;
    default:
      j["type"] = "unknown";
      break;
  }
  return j;
}

std::string DumpJson(const nlohmann::ordered_json& j) {
  // nlohmann throws on invalid UTF-8 by default. The server holds back partial characters,
  // but a model may still emit bytes that are not UTF-8: those become U+FFFD instead.
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::replace);
}

nlohmann::ordered_json StatusToJson(const absl::Status& status) {
  return {{"error",
           {{"code", absl::StatusCodeToString(status.code())},
            {"code_number", static_cast<int>(status.code())},
            {"message", std::string(status.message())}}}};
}

}  // namespace prefixd::ctl

// clients/prefixctl/json_format.h — prefixctl's --json output: API messages as JSON objects.
//
// Written out by hand rather than with protobuf's JSON printer so that 64-bit counters stay
// numbers (proto3 JSON prints them as strings), every field is present even when zero, and
// block keys are hex.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_JSON_FORMAT_H_
#define PREFIXD_CLIENTS_PREFIXCTL_JSON_FORMAT_H_

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "prefixd/v1/cache.pb.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::ctl {

// "STOP", "LENGTH", "CANCELLED"; "" for FINISH_REASON_UNSPECIFIED.
std::string FinishReasonName(v1::FinishReason reason);

// Lower-case hex of raw bytes (block keys).
std::string HexBytes(const std::string& bytes);

// {"token_ids":[...], "text":"..."} plus "request_id" when set, "logprobs" when present and
// "finish_reason" + "usage" on the last message.
nlohmann::ordered_json GenerateResponseToJson(const v1::GenerateResponse& response);
nlohmann::ordered_json UsageToJson(const v1::Usage& usage);
// {"prompt_text":"...", "token_ids":[...]}
nlohmann::ordered_json TokenizeResponseToJson(const v1::TokenizeResponse& response);
// Every field of GetStats; the host tier's ("host_blocks", "demoted_blocks", ...) only when
// the server has one.
nlohmann::ordered_json CacheStatsToJson(const v1::CacheStats& stats);
// {"sequence":N, "type":"stored"|"removed"|"snapshot_done", ...the event's fields}; stored
// and removed carry "medium": "device" or "host".
nlohmann::ordered_json CacheEventToJson(const v1::CacheEvent& event);
// One line of JSON (no newline); invalid UTF-8 in strings becomes U+FFFD.
std::string DumpJson(const nlohmann::ordered_json& j);

// {"error":{"code":"UNAVAILABLE","code_number":14,"message":"..."}}
nlohmann::ordered_json StatusToJson(const absl::Status& status);

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_JSON_FORMAT_H_

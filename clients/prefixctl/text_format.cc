#include "clients/prefixctl/text_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "clients/prefixctl/json_format.h"

namespace prefixd::ctl {
namespace {

std::string Percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

// Full keys are 32 hex digits; 8 tell blocks apart on a screen. --json prints them whole.
std::string ShortKey(const std::string& key) {
  if (key.empty()) return "-";
  return HexBytes(key).substr(0, 8);
}

std::string NamespaceName(const std::string& name) { return name.empty() ? "(default)" : name; }

// 512 B, 3.0 KiB, 1.5 GiB.
std::string Bytes(int64_t n) {
  const char* const units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return absl::StrCat(n, " B");
  double v = static_cast<double>(n) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, units[unit]);
}

// Host events say so; device events read as before the host tier.
std::string MediumSuffix(v1::Medium medium) { return medium == v1::MEDIUM_HOST ? " (host)" : ""; }

}  // namespace

std::string FormatUsage(v1::FinishReason finish_reason, const v1::Usage& u) {
  return absl::StrFormat(
      "finish %s | prompt %d tokens, %d cached (%s) | completion %d tokens | queue %.1f ms, "
      "first token %.1f ms, total %.1f ms",
      FinishReasonName(finish_reason), u.prompt_tokens(), u.cached_tokens(),
      Percent(u.cached_tokens(), u.prompt_tokens()), u.completion_tokens(), u.queue_seconds() * 1e3,
      u.time_to_first_token_seconds() * 1e3, u.total_seconds() * 1e3);
}

std::string FormatChatUsage(const v1::Usage& u) {
  const std::string share =
      u.prompt_tokens() > 0
          ? absl::StrFormat("%d%%", static_cast<int>(100.0 * u.cached_tokens() / u.prompt_tokens()))
          : "-";
  return absl::StrFormat("[prompt %d tokens, %d cached (%s), %d tokens out, TTFT %.0f ms]",
                         u.prompt_tokens(), u.cached_tokens(), share, u.completion_tokens(),
                         u.time_to_first_token_seconds() * 1e3);
}

std::string FormatTokenize(const v1::TokenizeResponse& r) {
  // A newline after the text whatever it ends with: its own final newlines stay visible.
  return absl::StrFormat("--- prompt text (%d bytes) ---\n%s\n--- %d token ids ---\n%s\n",
                         r.prompt_text().size(), r.prompt_text(), r.token_ids_size(),
                         absl::StrJoin(r.token_ids(), ","));
}

std::string FormatLogprobs(const std::vector<v1::TokenLogprob>& logprobs) {
  std::string out = absl::StrFormat("%-8s %-10s %s\n", "token", "logprob", "top");
  for (const v1::TokenLogprob& lp : logprobs) {
    std::string top;
    for (const v1::TopLogprob& t : lp.top()) {
      absl::StrAppendFormat(&top, "%s%d:%.3f", top.empty() ? "" : " ", t.token_id(), t.logprob());
    }
    absl::StrAppendFormat(&out, "%-8d %-10.4f %s\n", lp.token_id(), lp.logprob(), top);
  }
  return out;
}

std::string FormatPins(const v1::ListPinsResponse& pins) {
  if (pins.pins_size() == 0) return "no pins\n";
  std::string out = absl::StrFormat("%-8s %-16s %-24s %10s %6s %10s\n", "pin", "tenant",
                                    "namespace", "tokens", "count", "age");
  for (const v1::PinInfo& p : pins.pins()) {
    absl::StrAppendFormat(&out, "%-8d %-16s %-24s %10d %6d %9.0fs\n", p.pin_id(), p.tenant(),
                          NamespaceName(p.namespace_()), p.tokens(), p.count(), p.age_seconds());
  }
  absl::StrAppendFormat(&out, "%d tokens pinned in all\n", pins.pinned_tokens());
  return out;
}

std::string FormatStats(const v1::CacheStats& s) {
  const v1::BlockCounts& b = s.blocks();
  std::string out =
      absl::StrFormat("hit rate    %s (%d of %d prompt tokens served from the cache",
                      Percent(s.hit_tokens(), s.query_tokens()), s.hit_tokens(), s.query_tokens());
  if (s.host_hit_tokens() > 0) {
    absl::StrAppendFormat(&out, ", %d of them from the host tier", s.host_hit_tokens());
  }
  out += ")\n";
  if (s.has_blocks()) {
    absl::StrAppendFormat(&out,
                          "blocks      %d total (%d tokens each): %d free, %d evictable, %d in use "
                          "(%d pinned)\n",
                          b.total(), s.block_size(), b.free(), b.evictable(), b.in_use(),
                          b.pinned());
    if (s.has_host_blocks()) {
      // The second tier, in host memory: only on servers that have one.
      const v1::BlockCounts& h = s.host_blocks();
      absl::StrAppendFormat(&out,
                            "host tier   %d blocks (%s allocated): %d free, %d evictable, %d being "
                            "promoted\n",
                            h.total(), Bytes(s.host_bytes_allocated()), h.free(), h.evictable(),
                            h.in_use());
    }
    absl::StrAppendFormat(
        &out, "counters    %d inserted, %d evicted, %d flushed, %d hash collisions\n",
        s.inserted_blocks(), s.evicted_blocks(), s.flushed_blocks(), s.hash_collisions());
    if (s.has_host_blocks()) {
      absl::StrAppendFormat(&out,
                            "host moves  %d demoted (%s), %d promoted (%s), %d evicted from host, "
                            "%d dropped\n",
                            s.demoted_blocks(), Bytes(s.bytes_to_host()), s.promoted_blocks(),
                            Bytes(s.bytes_to_device()), s.host_evicted_blocks(),
                            s.dropped_blocks());
      if (s.host_allocation_failures() > 0) {
        absl::StrAppendFormat(&out,
                              "            %d host memory allocations refused (the tier stopped "
                              "growing)\n",
                              s.host_allocation_failures());
      }
    }
    absl::StrAppendFormat(&out, "requests    %d running, %d waiting\n", s.running_requests(),
                          s.waiting_requests());
  } else {
    // A tenant's own view (not an admin): the pool and the queue are the operator's.
    absl::StrAppendFormat(&out, "blocks      %d tokens each (pool and queue: admins only)\n",
                          s.block_size());
  }
  if (s.namespaces_size() > 0) {
    size_t width = 9;
    for (const v1::NamespaceStats& ns : s.namespaces()) {
      width = std::max(width, NamespaceName(ns.name()).size());
    }
    const int w = static_cast<int>(width);
    // Host columns where there is a host tier (or a row says so: a tenant's view has no pools).
    bool host = s.has_host_blocks();
    for (const v1::NamespaceStats& ns : s.namespaces()) {
      host = host || ns.host_hit_tokens() > 0 || ns.host_cached_blocks() > 0;
    }
    absl::StrAppendFormat(&out, "\n%-*s %14s %14s %9s %14s", w, "namespace", "query tokens",
                          "hit tokens", "hit rate", "cached blocks");
    if (host) absl::StrAppendFormat(&out, " %14s %14s", "host hits", "host blocks");
    out += "\n";
    for (const v1::NamespaceStats& ns : s.namespaces()) {
      absl::StrAppendFormat(&out, "%-*s %14d %14d %9s %14d", w, NamespaceName(ns.name()),
                            ns.query_tokens(), ns.hit_tokens(),
                            Percent(ns.hit_tokens(), ns.query_tokens()), ns.cached_blocks());
      if (host) {
        absl::StrAppendFormat(&out, " %14d %14d", ns.host_hit_tokens(), ns.host_cached_blocks());
      }
      out += "\n";
    }
  }
  return out;
}

std::string FormatEvent(const v1::CacheEvent& e) {
  auto keys = [](const auto& repeated) {
    std::string out;
    for (const std::string& key : repeated)
      absl::StrAppend(&out, out.empty() ? "" : " ", ShortKey(key));
    return out;
  };
  std::string out = absl::StrCat("#", e.sequence(), " ");
  switch (e.event_case()) {
    case v1::CacheEvent::kStored: {
      const v1::BlocksStored& stored = e.stored();
      absl::StrAppend(&out, "stored ", stored.block_keys_size(), " blocks",
                      MediumSuffix(stored.medium()), " in ", NamespaceName(stored.namespace_()),
                      " (parent ", ShortKey(stored.parent_key()), ", keys ",
                      keys(stored.block_keys()), ")");
      break;
    }
    case v1::CacheEvent::kRemoved: {
      const v1::BlocksRemoved& removed = e.removed();
      absl::StrAppend(&out, "removed ", removed.block_keys_size(), " blocks",
                      MediumSuffix(removed.medium()), " from ", NamespaceName(removed.namespace_()),
                      " (keys ", keys(removed.block_keys()), ")");
      break;
    }
    case v1::CacheEvent::kSnapshotDone:
      out += "snapshot done; live events follow";
      break;
    default:
      out += "unknown event";
      break;
  }
  return out;
}

}  // namespace prefixd::ctl

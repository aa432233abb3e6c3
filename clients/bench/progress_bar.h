// clients/bench/progress_bar.h — one line on a terminal, redrawn in place.
#ifndef PREFIXD_CLIENTS_BENCH_PROGRESS_BAR_H_
#define PREFIXD_CLIENTS_BENCH_PROGRESS_BAR_H_

#include <cstdint>
#include <cstdio>
#include <string>

namespace prefixd::bench {

// Draws "label [=====>    ] 12/16 requests, 0 failed, 3.2 s" on `out` with a carriage
// return before each redraw. Draws nothing when `out` is not a terminal, so logs and pipes
// stay clean. Not thread-safe: one thread draws.
class ProgressBar {
 public:
  ProgressBar(std::FILE* out, std::string label, int64_t total);
  ~ProgressBar();  // ends the line if one was drawn

  void Draw(int64_t done, int64_t failed, double elapsed_s);
  bool enabled() const { return enabled_; }

 private:
  std::FILE* out_;
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
};

// The line itself (no carriage return), for tests.
std::string ProgressLine(const std::string& label, int64_t done, int64_t failed, int64_t total,
                         double elapsed_s, int bar_width);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_PROGRESS_BAR_H_

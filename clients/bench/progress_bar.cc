#include "clients/bench/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace prefixd::bench {

std::string ProgressLine(const std::string& label, int64_t done, int64_t failed, int64_t total,
                         double elapsed_s, int bar_width) {
  const int64_t filled =
      total > 0 ? std::clamp<int64_t>(done * bar_width / total, 0, bar_width) : bar_width;
  std::string bar(filled, '=');
  if (filled < bar_width) {
    bar += '>';
    bar.append(bar_width - filled - 1, ' ');
  }
  return absl::StrFormat("%s [%s] %d/%d requests, %d failed, %.1f s", label, bar, done, total,
                         failed, elapsed_s);
}

ProgressBar::ProgressBar(std::FILE* out, std::string label, int64_t total)
    : out_(out), label_(std::move(label)), total_(total), enabled_(isatty(fileno(out)) == 1) {}

ProgressBar::~ProgressBar() {
  if (drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void ProgressBar::Draw(int64_t done, int64_t failed, double elapsed_s) {
  if (!enabled_) return;
  // "\033[K" clears what a longer previous line left behind.
  std::fprintf(out_, "\r%s\033[K",
               ProgressLine(label_, done, failed, total_, elapsed_s, 30).c_str());
  std::fflush(out_);
  drawn_ = true;
}

}  // namespace prefixd::bench

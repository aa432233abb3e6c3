// kernels/cuda/cuda_sampling.cc — CudaBackend::Sample: validates the rows' parameters, draws
// each row's uniform on the host (SamplingUniform, shared by every backend), runs the
// sampling kernels (sampling.cu) over chunks of rows, and brings back only the tokens and
// logprobs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace prefixd {
namespace {

// Rows sorted per launch: bounds the sort buffers at ~16 * kMaxRowsPerLaunch * V bytes.
constexpr int64_t kMaxRowsPerLaunch = 64;

size_t AlignUp(size_t bytes) { return (bytes + 255) / 256 * 256; }

cuda::SampleRowParams DeviceParams(const SamplingRow& row) {
  PREFIXD_CHECK(row.temperature >= 0.0f && std::isfinite(row.temperature) && row.top_k >= 0 &&
                    row.top_p > 0.0f && row.top_p <= 1.0f && row.num_top_logprobs >= 0 &&
                    row.num_top_logprobs <= cuda::kMaxTopLogprobs,
                "Sample: invalid sampling parameters temperature=", row.temperature,
                " top_k=", row.top_k, " top_p=", row.top_p,
                " num_top_logprobs=", row.num_top_logprobs);
  cuda::SampleRowParams p;
  p.temperature = row.temperature;
  p.top_k = row.top_k;
  p.top_p = row.top_p;
  p.uniform = SamplingUniform(row.seed, row.step);
  p.greedy = row.temperature == 0.0f || row.top_k == 1;
  p.num_top_logprobs = row.num_top_logprobs;
  p.needs_sort = !p.greedy || row.num_top_logprobs > 0;
  return p;
}

}  // namespace

void CudaBackend::Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
                         absl::Span<SampledToken> out) {
  CheckShape("Sample", "logits", logits, DType::kF32, {kAnySize, kAnySize});
  const int64_t batch = logits.dim(0), vocab = logits.dim(1);
  PREFIXD_CHECK(
      static_cast<int64_t>(rows.size()) == batch && static_cast<int64_t>(out.size()) == batch,
      "Sample: logits ", logits.ShapeString(), " with ", rows.size(), " sampling rows and ",
      out.size(), " outputs");
  PREFIXD_CHECK(vocab > 0 && vocab <= std::numeric_limits<int32_t>::max() / 2,
                "Sample: bad vocabulary size in logits ", logits.ShapeString());
  if (batch == 0) return;
  MakeCurrent();

  // Host and device copies of [batch] params, then [batch] results, each 256-byte aligned.
  const size_t params_bytes = AlignUp(sizeof(cuda::SampleRowParams) * batch);
  const size_t io_bytes = params_bytes + sizeof(cuda::SampleRowResult) * batch;
  // The pinned buffer's previous results have been read: Sample always returns synchronised.
  char* host = static_cast<char*>(sample_host_.Get(io_bytes, stream_, "Sample host"));
  char* device = static_cast<char*>(sample_io_.Get(io_bytes, stream_, "Sample parameters"));
  auto* host_params = reinterpret_cast<cuda::SampleRowParams*>(host);
  auto* host_results = reinterpret_cast<cuda::SampleRowResult*>(host + params_bytes);
  auto* device_params = reinterpret_cast<cuda::SampleRowParams*>(device);
  auto* device_results = reinterpret_cast<cuda::SampleRowResult*>(device + params_bytes);
  for (int64_t b = 0; b < batch; ++b) host_params[b] = DeviceParams(rows[b]);
  PREFIXD_CUDA_CHECK(cudaMemcpyAsync(device_params, host_params,
                                     sizeof(cuda::SampleRowParams) * batch, cudaMemcpyHostToDevice,
                                     stream_));

  // rows * vocab stays within the sort's int range.
  const int64_t chunk = std::max<int64_t>(
      1, std::min({batch, kMaxRowsPerLaunch, (std::numeric_limits<int32_t>::max() - 1) / vocab}));
  // Enough for a full chunk and for the last, shorter one.
  const int64_t last = batch - (batch - 1) / chunk * chunk;
  const size_t scratch_bytes =
      std::max(cuda::SampleScratchBytes(static_cast<int>(chunk), static_cast<int>(vocab)),
               cuda::SampleScratchBytes(static_cast<int>(last), static_cast<int>(vocab)));
  void* scratch = sample_scratch_.Get(scratch_bytes, stream_, "Sample");
  for (int64_t begin = 0; begin < batch; begin += chunk) {
    const int64_t count = std::min(chunk, batch - begin);
    bool any_needs_sort = false;
    for (int64_t b = begin; b < begin + count; ++b)
      any_needs_sort |= host_params[b].needs_sort != 0;
    PREFIXD_CUDA_CHECK(cuda::LaunchSample(logits.as<float>() + begin * vocab,
                                          static_cast<int>(count), static_cast<int>(vocab),
                                          device_params + begin, any_needs_sort, scratch,
                                          scratch_bytes, device_results + begin, stream_));
  }
  PREFIXD_CUDA_CHECK(cudaMemcpyAsync(host_results, device_results,
                                     sizeof(cuda::SampleRowResult) * batch, cudaMemcpyDeviceToHost,
                                     stream_));
  PREFIXD_CUDA_CHECK(cudaStreamSynchronize(stream_));

  for (int64_t b = 0; b < batch; ++b) {
    const cuda::SampleRowResult& r = host_results[b];
    out[b].token = r.token;
    out[b].logprob = r.logprob;
    const int top = static_cast<int>(std::min<int64_t>(rows[b].num_top_logprobs, vocab));
    out[b].top.resize(top);
    for (int i = 0; i < top; ++i) out[b].top[i] = {r.top_ids[i], r.top_logprobs[i]};
  }
}

}  // namespace prefixd

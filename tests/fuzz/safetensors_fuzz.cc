// Fuzzes the safetensors reader: any bytes as a .safetensors file must give either a valid
// tensor table (every tensor inside the file, sizes consistent) or a Status, never a crash.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/check.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An in-memory file: the reader maps it exactly as it maps a real one.
  const int fd = memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  PREFIXD_CHECK(fd >= 0, "memfd_create");
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    PREFIXD_CHECK(n > 0, "write");
    written += static_cast<size_t>(n);
  }
  auto file = prefixd::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    const std::byte* begin = nullptr;
    for (const prefixd::TensorInfo& t : (*file)->tensors()) {
      PREFIXD_CHECK(
          t.nbytes == static_cast<size_t>(t.numel()) * prefixd::SafetensorsDTypeSize(t.dtype),
          "size of ", t.name);
      // Touch the first and last byte: both must be inside the mapping.
      if (t.nbytes > 0) {
        volatile std::byte first = t.data[0], last = t.data[t.nbytes - 1];
        (void)first;
        (void)last;
      }
      if (begin == nullptr || t.data < begin) begin = t.data;
    }
  }
  close(fd);
  return 0;
}

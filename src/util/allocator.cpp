#include "ecomla/allocator.h"

#include <limits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ecomla {

void keep_freed_memory() {
#if defined(__GLIBC__)
  // Setting either value also turns off glibc's dynamic adjustment of both.
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());  // 2 GiB
#endif
}

}  // namespace ecomla

// How the process allocates the large temporary tensors of training and evaluation.
#pragma once

namespace ecomla {

// Keeps freed memory in the process for reuse instead of returning it to the system: glibc
// serves blocks up to its largest heap size (32 MiB) from the heap and trims the heap only past
// 2 GiB free. By default every block above a moving threshold is a fresh mmap whose pages the
// kernel must fault in and zero on first touch; a KD step allocates and frees hundreds of
// vocabulary-sized chunks, and that page churn took 30% of the fused KD loss's time on the
// development machine (bench_train BM_KdLoss: 6.6 s -> 4.0 s for 2048 positions). Call once, at
// the start of a program; a no-op where the C library is not glibc.
void keep_freed_memory();

}  // namespace ecomla

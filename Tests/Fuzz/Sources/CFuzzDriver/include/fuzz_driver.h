/* libFuzzer's driver entry (libclang_rt.fuzzer, linked by -sanitize=fuzzer):
 * the fuzz targets' own main calls it, so SwiftPM's executable entry point
 * stays theirs. Referenced only in fuzzing builds (-DFUZZING). */
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

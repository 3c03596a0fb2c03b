/* A stand-in CUDA runtime for testing the CUDA shim without a GPU: "device"
 * memory is host memory and every copy is a memcpy, so the shim's block
 * indexing (slabs, strides, page offsets, merged runs) can be checked bit for
 * bit on any machine. Counts the copies it was asked for. */
#include <stdlib.h>
#include <string.h>

int fake_memcpy_calls = 0;

int cudaGetDeviceCount(int *n) { *n = 1; return 0; }
int cudaSetDevice(int d) { (void)d; return 0; }
int cudaRuntimeGetVersion(int *v) { *v = 99999; return 0; }
int cudaStreamCreateWithFlags(void **s, unsigned f) { (void)f; *s = (void *)1; return 0; }
int cudaStreamSynchronize(void *s) { (void)s; return 0; }
int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *s) {
    (void)kind; (void)s;
    memcpy(dst, src, n);
    fake_memcpy_calls++;
    return 0;
}
int cudaHostRegister(void *p, size_t n, unsigned f) { (void)p; (void)n; (void)f; return 0; }
int cudaHostUnregister(void *p) { (void)p; return 0; }
int cudaIpcOpenMemHandle(void **p, char h[64], unsigned f) { (void)p; (void)h; (void)f; return 201; }
int cudaIpcCloseMemHandle(void *p) { (void)p; return 0; }
const char *cudaGetErrorString(int e) { return e == 201 ? "fake: no IPC" : "fake error"; }
int cudaMalloc(void **p, size_t n) { *p = malloc(n); return *p ? 0 : 2; }
int cudaFree(void *p) { free(p); return 0; }
int cudaHostGetDevicePointer(void **d, void *h, unsigned f) { (void)f; *d = h; return 0; }
int cudaDeviceGetAttribute(int *v, int attr, int dev) { (void)dev; *v = attr == 75 ? 9 : 0; return 0; }

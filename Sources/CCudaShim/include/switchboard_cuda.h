/*
 * switchboard_cuda.h: the KV tier's CUDA shim. Built on every machine: the
 * CUDA runtime is loaded at run time (dlopen), and every call reports
 * SBCUDA_UNAVAILABLE, with the reason, where there is no runtime or no GPU.
 *
 * It moves a request's KV blocks between an engine's paged KV cache on the
 * GPU and host pages (the agent's shared pool, pinned with
 * sbcuda_host_register): gather = device blocks -> host pages, scatter = the
 * reverse. A block's page holds, in order, that block's bytes from every
 * "slab" (a layer's KV tensor, or its K and V halves) given by the caller:
 *
 *   slab s, block b lives at  base[s] + b * stride[s],  bytes[s] long.
 *
 * This covers vLLM's per-layer layouts ([num_blocks, ...] and
 * [2, num_blocks, ...]). Two ways to copy, both on the shim's own
 * non-blocking stream and synchronised before returning:
 *  - copies: batched cudaMemcpyAsync calls, one per (slab, block) (runs of
 *    adjacent blocks whose host pages are adjacent too are merged);
 *  - kernel: one launch of a copy kernel compiled at run time with NVRTC,
 *    reading and writing the host pages through their mapped device alias
 *    (pages must lie in a range given to sbcuda_host_register).
 * Copies are used until sbcuda_set_mode loads the kernel: 0 auto (the kernel
 * when the pages are registered, else copies), 1 copies, 2 kernel only. The
 * kernel path has not yet run on a GPU: scripts/gpu-check measures both and
 * checks them bit for bit. Transfers are not thread-safe: one at a time.
 */
#ifndef SWITCHBOARD_CUDA_H
#define SWITCHBOARD_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SBCUDA_OK = 0, SBCUDA_UNAVAILABLE = 1, SBCUDA_ERROR = 2, SBCUDA_BAD_ARGUMENT = 3 };

typedef struct {
    uint64_t base;    /* device address of block 0 of this slab */
    uint64_t stride;  /* bytes from one block to the next */
    uint64_t bytes;   /* bytes of one block in this slab */
} sbcuda_slab;

/* Loads the runtime and checks for a device. Returns SBCUDA_OK or
 * SBCUDA_UNAVAILABLE; why goes to err. Safe to call repeatedly. */
int sbcuda_init(int device, char *err, size_t err_len);
/* The runtime's version (e.g. 12040), or 0 when unavailable. */
int sbcuda_runtime_version(void);
/* Pins (page-locks) host memory for DMA; for the agent's shared pool mapping. */
int sbcuda_host_register(void *ptr, uint64_t bytes, char *err, size_t err_len);
int sbcuda_host_unregister(void *ptr);
/* 0 auto, 1 copies, 2 kernel (compiles and loads it; SBCUDA_UNAVAILABLE with
 * the reason if NVRTC or the driver is missing). */
int sbcuda_set_mode(int mode, char *err, size_t err_len);
/* Device blocks -> host pages. pages[i] receives block block_ids[i]. */
int sbcuda_gather(const sbcuda_slab *slabs, int n_slabs, const int32_t *block_ids, int n_blocks,
                  void *const *pages, char *err, size_t err_len);
/* Host pages -> device blocks. */
int sbcuda_scatter(const sbcuda_slab *slabs, int n_slabs, const int32_t *block_ids, int n_blocks,
                   const void *const *pages, char *err, size_t err_len);
/* Opens another process's device allocation from its 64-byte cudaIpcMemHandle
 * (so the agent can reach an engine's KV tensors); *device_ptr gets its address. */
int sbcuda_ipc_open(const void *handle64, uint64_t *device_ptr, char *err, size_t err_len);
int sbcuda_ipc_close(uint64_t device_ptr);

#ifdef __cplusplus
}
#endif
#endif

/* The CUDA shim; see include/switchboard_cuda.h. No CUDA headers are needed
 * to build it: the few runtime entry points are declared here and resolved
 * with dlsym. */
#define _GNU_SOURCE
#include "switchboard_cuda.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
typedef void *cudaStream_t;
typedef struct { char reserved[64]; } ipc_handle;

enum { H2D = 1, D2H = 2 };

static struct {
    int tried, ok;
    char why[256];
    void *lib;
    cudaStream_t stream;
    int version;
    cudaError_t (*GetDeviceCount)(int *);
    cudaError_t (*SetDevice)(int);
    cudaError_t (*RuntimeGetVersion)(int *);
    cudaError_t (*StreamCreateWithFlags)(cudaStream_t *, unsigned);
    cudaError_t (*StreamSynchronize)(cudaStream_t);
    cudaError_t (*MemcpyAsync)(void *, const void *, size_t, int, cudaStream_t);
    cudaError_t (*HostRegister)(void *, size_t, unsigned);
    cudaError_t (*HostUnregister)(void *);
    cudaError_t (*IpcOpenMemHandle)(void **, ipc_handle, unsigned);
    cudaError_t (*IpcCloseMemHandle)(void *);
    const char *(*GetErrorString)(cudaError_t);
} rt;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void say(char *err, size_t len, const char *fmt, const char *a, int code) {
    if (err && len) snprintf(err, len, fmt, a, code);
}

static const char *cuda_error(cudaError_t e) { return rt.GetErrorString ? rt.GetErrorString(e) : "unknown CUDA error"; }

static int load(int device) {
    static const char *names[] = { "libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0" };
    const char *env = getenv("SWITCHBOARD_CUDART");
    if (env && *env) rt.lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; !rt.lib && i < sizeof names / sizeof *names; i++) rt.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!rt.lib) {
        snprintf(rt.why, sizeof rt.why, "CUDA unavailable: no CUDA runtime (libcudart) on this machine%s",
                 env ? " or at $SWITCHBOARD_CUDART" : "; set SWITCHBOARD_CUDART to its path if it is installed elsewhere");
        return 0;
    }
#define SYM(name)                                                                        \
    if (!(*(void **)&rt.name = dlsym(rt.lib, "cuda" #name))) {                           \
        snprintf(rt.why, sizeof rt.why, "CUDA unavailable: libcudart lacks cuda%s", #name); \
        return 0;                                                                        \
    }
    SYM(GetDeviceCount) SYM(SetDevice) SYM(RuntimeGetVersion) SYM(StreamCreateWithFlags) SYM(StreamSynchronize)
    SYM(MemcpyAsync) SYM(HostRegister) SYM(HostUnregister) SYM(IpcOpenMemHandle) SYM(IpcCloseMemHandle) SYM(GetErrorString)
#undef SYM
    int n = 0;
    cudaError_t e = rt.GetDeviceCount(&n);
    if (e != 0 || n == 0) {
        snprintf(rt.why, sizeof rt.why, "CUDA unavailable: no usable GPU (%s)", e ? cuda_error(e) : "0 devices");
        return 0;
    }
    if (device < 0 || device >= n) {
        snprintf(rt.why, sizeof rt.why, "CUDA unavailable: device %d requested, %d present", device, n);
        return 0;
    }
    if ((e = rt.SetDevice(device)) || (e = rt.StreamCreateWithFlags(&rt.stream, 1 /* cudaStreamNonBlocking */))) {
        snprintf(rt.why, sizeof rt.why, "CUDA unavailable: %s", cuda_error(e));
        return 0;
    }
    rt.RuntimeGetVersion(&rt.version);
    return 1;
}

int sbcuda_init(int device, char *err, size_t err_len) {
    pthread_mutex_lock(&lock);
    if (!rt.tried) {
        rt.tried = 1;
        rt.ok = load(device);
    }
    int ok = rt.ok;
    pthread_mutex_unlock(&lock);
    if (!ok) say(err, err_len, "%s", rt.why, 0);
    return ok ? SBCUDA_OK : SBCUDA_UNAVAILABLE;
}

int sbcuda_runtime_version(void) { return rt.ok ? rt.version : 0; }

#define REQUIRE_CUDA()                                   \
    if (!rt.ok) {                                        \
        say(err, err_len, "%s", rt.tried ? rt.why : "CUDA shim not initialised: call sbcuda_init", 0); \
        return SBCUDA_UNAVAILABLE;                       \
    }

int sbcuda_host_register(void *ptr, uint64_t bytes, char *err, size_t err_len) {
    REQUIRE_CUDA();
    cudaError_t e = rt.HostRegister(ptr, (size_t)bytes, 1 /* cudaHostRegisterPortable */);
    if (e) { say(err, err_len, "cudaHostRegister failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    return SBCUDA_OK;
}

int sbcuda_host_unregister(void *ptr) { return rt.ok && rt.HostUnregister(ptr) == 0 ? SBCUDA_OK : SBCUDA_ERROR; }

static int copy_blocks(const sbcuda_slab *slabs, int n_slabs, const int32_t *ids, int n, void *const *pages, int dir,
                       char *err, size_t err_len) {
    REQUIRE_CUDA();
    if (n_slabs <= 0 || n < 0 || (n && (!ids || !pages))) { say(err, err_len, "%s", "bad arguments", 0); return SBCUDA_BAD_ARGUMENT; }
    uint64_t page_bytes = 0;
    for (int s = 0; s < n_slabs; s++) page_bytes += slabs[s].bytes;
    uint64_t off = 0;
    for (int s = 0; s < n_slabs; s++) {
        const sbcuda_slab *sl = &slabs[s];
        int i = 0;
        while (i < n) {
            if (ids[i] < 0) { say(err, err_len, "%s", "negative block id", 0); return SBCUDA_BAD_ARGUMENT; }
            /* Merge a run: next device block adjacent, next host page adjacent, and the slab's
             * block bytes fill its stride and its page share (so the run is contiguous on both sides). */
            int j = i + 1;
            while (j < n && sl->stride == sl->bytes && page_bytes == sl->bytes && ids[j] == ids[j - 1] + 1 &&
                   (const char *)pages[j] == (const char *)pages[j - 1] + page_bytes)
                j++;
            char *dev = (char *)(uintptr_t)(sl->base + (uint64_t)ids[i] * sl->stride);
            char *host = (char *)pages[i] + off;
            size_t bytes = (size_t)(sl->bytes * (uint64_t)(j - i));
            cudaError_t e = dir == D2H ? rt.MemcpyAsync(host, dev, bytes, D2H, rt.stream)
                                       : rt.MemcpyAsync(dev, host, bytes, H2D, rt.stream);
            if (e) { say(err, err_len, "cudaMemcpyAsync failed: %s", cuda_error(e), 0); rt.StreamSynchronize(rt.stream); return SBCUDA_ERROR; }
            i = j;
        }
        off += sl->bytes;
    }
    cudaError_t e = rt.StreamSynchronize(rt.stream);
    if (e) { say(err, err_len, "cudaStreamSynchronize failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    return SBCUDA_OK;
}

int sbcuda_gather(const sbcuda_slab *slabs, int n_slabs, const int32_t *ids, int n, void *const *pages, char *err, size_t err_len) {
    return copy_blocks(slabs, n_slabs, ids, n, pages, D2H, err, err_len);
}

int sbcuda_scatter(const sbcuda_slab *slabs, int n_slabs, const int32_t *ids, int n, const void *const *pages, char *err, size_t err_len) {
    return copy_blocks(slabs, n_slabs, ids, n, (void *const *)pages, H2D, err, err_len);
}

int sbcuda_ipc_open(const void *handle64, uint64_t *device_ptr, char *err, size_t err_len) {
    REQUIRE_CUDA();
    ipc_handle h;
    memcpy(&h, handle64, sizeof h);
    void *p = NULL;
    cudaError_t e = rt.IpcOpenMemHandle(&p, h, 1 /* cudaIpcMemLazyEnablePeerAccess */);
    if (e) { say(err, err_len, "cudaIpcOpenMemHandle failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    *device_ptr = (uint64_t)(uintptr_t)p;
    return SBCUDA_OK;
}

int sbcuda_ipc_close(uint64_t device_ptr) {
    return rt.ok && rt.IpcCloseMemHandle((void *)(uintptr_t)device_ptr) == 0 ? SBCUDA_OK : SBCUDA_ERROR;
}

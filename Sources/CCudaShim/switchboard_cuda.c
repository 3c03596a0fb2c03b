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
    cudaError_t (*Malloc)(void **, size_t);
    cudaError_t (*Free)(void *);
    cudaError_t (*HostGetDevicePointer)(void **, void *, unsigned);
    cudaError_t (*DeviceGetAttribute)(int *, int, int);
    int device;
    /* The copy kernel (NVRTC + driver API), loaded on first use. */
    int kernel_tried, kernel_ok;
    char kernel_why[512];
    void *driver, *nvrtc, *function;
    int (*LaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
    uint64_t *desc_host, desc_dev, desc_cap;
    int mode;
    /* Host ranges registered as mapped: host base, device alias, bytes. */
    struct { uint64_t host, dev, bytes; } maps[64];
    int n_maps;
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
    SYM(Malloc) SYM(Free) SYM(HostGetDevicePointer) SYM(DeviceGetAttribute)
#undef SYM
    rt.device = device;
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
    /* Portable | Mapped: usable by every context, and addressable by kernels
     * (the copy kernel writes gathered blocks straight into these pages). */
    cudaError_t e = rt.HostRegister(ptr, (size_t)bytes, 1 | 2);
    if (e) { say(err, err_len, "cudaHostRegister failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    void *dev = NULL;
    pthread_mutex_lock(&lock);
    if (rt.n_maps < 64 && rt.HostGetDevicePointer(&dev, ptr, 0) == 0) {
        rt.maps[rt.n_maps].host = (uint64_t)(uintptr_t)ptr;
        rt.maps[rt.n_maps].dev = (uint64_t)(uintptr_t)dev;
        rt.maps[rt.n_maps].bytes = bytes;
        rt.n_maps++;
    }
    pthread_mutex_unlock(&lock);
    return SBCUDA_OK;
}

int sbcuda_host_unregister(void *ptr) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < rt.n_maps; i++)
        if (rt.maps[i].host == (uint64_t)(uintptr_t)ptr) { rt.maps[i] = rt.maps[--rt.n_maps]; break; }
    pthread_mutex_unlock(&lock);
    return rt.ok && rt.HostUnregister(ptr) == 0 ? SBCUDA_OK : SBCUDA_ERROR;
}

/* The device alias of a registered host address, or 0. */
static uint64_t device_alias(const void *host) {
    uint64_t h = (uint64_t)(uintptr_t)host;
    for (int i = 0; i < rt.n_maps; i++)
        if (h >= rt.maps[i].host && h < rt.maps[i].host + rt.maps[i].bytes) return rt.maps[i].dev + (h - rt.maps[i].host);
    return 0;
}

/* ---- the copy kernel: one launch moves every (source, destination, bytes)
 * triple, 16 bytes per thread per step when aligned. Compiled with NVRTC for
 * the device's compute capability, loaded with the driver API into the
 * runtime's primary context. */

static const char *kernel_source =
    "struct alignas(16) v16 { unsigned long long a, b; };\n"
    "extern \"C\" __global__ void sb_copy(const unsigned long long *desc, int n) {\n"
    "  for (int d = blockIdx.x; d < n; d += gridDim.x) {\n"
    "    const char *src = (const char *)desc[3 * d]; char *dst = (char *)desc[3 * d + 1];\n"
    "    unsigned long long bytes = desc[3 * d + 2];\n"
    "    if ((((unsigned long long)src | (unsigned long long)dst | bytes) & 15ull) == 0) {\n"
    "      const v16 *s = (const v16 *)src; v16 *t = (v16 *)dst;\n"
    "      for (unsigned long long i = threadIdx.x; i < (bytes >> 4); i += blockDim.x) t[i] = s[i];\n"
    "    } else {\n"
    "      for (unsigned long long i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];\n"
    "    }\n"
    "  }\n"
    "}\n";

static int load_kernel(void) {
    static const char *nvrtc_names[] = { "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" };
    const char *env = getenv("SWITCHBOARD_NVRTC");
    if (env && *env) rt.nvrtc = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; !rt.nvrtc && i < sizeof nvrtc_names / sizeof *nvrtc_names; i++) rt.nvrtc = dlopen(nvrtc_names[i], RTLD_NOW | RTLD_LOCAL);
    rt.driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!rt.nvrtc || !rt.driver) {
        snprintf(rt.kernel_why, sizeof rt.kernel_why, "copy kernel unavailable: %s not found",
                 rt.nvrtc ? "libcuda.so.1" : "libnvrtc (set SWITCHBOARD_NVRTC)");
        return 0;
    }
    int (*Create)(void **, const char *, const char *, int, const char *const *, const char *const *) = dlsym(rt.nvrtc, "nvrtcCreateProgram");
    int (*Compile)(void *, int, const char *const *) = dlsym(rt.nvrtc, "nvrtcCompileProgram");
    int (*PTXSize)(void *, size_t *) = dlsym(rt.nvrtc, "nvrtcGetPTXSize");
    int (*PTX)(void *, char *) = dlsym(rt.nvrtc, "nvrtcGetPTX");
    int (*LogSize)(void *, size_t *) = dlsym(rt.nvrtc, "nvrtcGetProgramLogSize");
    int (*Log)(void *, char *) = dlsym(rt.nvrtc, "nvrtcGetProgramLog");
    int (*Destroy)(void **) = dlsym(rt.nvrtc, "nvrtcDestroyProgram");
    int (*ModuleLoadData)(void **, const void *) = dlsym(rt.driver, "cuModuleLoadData");
    int (*ModuleGetFunction)(void **, void *, const char *) = dlsym(rt.driver, "cuModuleGetFunction");
    *(void **)&rt.LaunchKernel = dlsym(rt.driver, "cuLaunchKernel");
    if (!Create || !Compile || !PTXSize || !PTX || !LogSize || !Log || !Destroy || !ModuleLoadData || !ModuleGetFunction || !rt.LaunchKernel) {
        snprintf(rt.kernel_why, sizeof rt.kernel_why, "copy kernel unavailable: NVRTC or driver entry points missing");
        return 0;
    }
    int major = 0, minor = 0;
    rt.DeviceGetAttribute(&major, 75, rt.device);  /* cudaDevAttrComputeCapabilityMajor */
    rt.DeviceGetAttribute(&minor, 76, rt.device);  /* cudaDevAttrComputeCapabilityMinor */
    char arch[64];
    snprintf(arch, sizeof arch, "--gpu-architecture=compute_%d%d", major, minor);
    const char *opts[] = { arch, "--std=c++14" };
    void *prog = NULL;
    if (Create(&prog, kernel_source, "sb_copy.cu", 0, NULL, NULL) != 0) {
        snprintf(rt.kernel_why, sizeof rt.kernel_why, "copy kernel unavailable: nvrtcCreateProgram failed");
        return 0;
    }
    if (Compile(prog, 2, opts) != 0) {
        size_t n = 0;
        LogSize(prog, &n);
        char *log = malloc(n + 1);
        if (log) { Log(prog, log); log[n] = 0; }
        snprintf(rt.kernel_why, sizeof rt.kernel_why, "copy kernel unavailable: NVRTC (%s) failed: %.400s", arch, log ? log : "");
        free(log);
        Destroy(&prog);
        return 0;
    }
    size_t n = 0;
    PTXSize(prog, &n);
    char *ptx = malloc(n + 1);
    if (!ptx) { Destroy(&prog); return 0; }
    PTX(prog, ptx);
    Destroy(&prog);
    rt.Free(NULL);  /* makes the runtime's primary context current for the driver calls */
    void *module = NULL;
    int r = ModuleLoadData(&module, ptx);
    free(ptx);
    if (r != 0 || ModuleGetFunction(&rt.function, module, "sb_copy") != 0) {
        snprintf(rt.kernel_why, sizeof rt.kernel_why, "copy kernel unavailable: loading the PTX failed (CUresult %d)", r);
        return 0;
    }
    return 1;
}

int sbcuda_set_mode(int mode, char *err, size_t err_len) {
    REQUIRE_CUDA();
    if (mode < 0 || mode > 2) { say(err, err_len, "%s", "mode is 0 (auto), 1 (copies) or 2 (kernel)", 0); return SBCUDA_BAD_ARGUMENT; }
    if (mode != 1) {
        pthread_mutex_lock(&lock);
        if (!rt.kernel_tried) { rt.kernel_tried = 1; rt.kernel_ok = load_kernel(); }
        pthread_mutex_unlock(&lock);
        if (mode == 2 && !rt.kernel_ok) { say(err, err_len, "%s", rt.kernel_why, 0); return SBCUDA_UNAVAILABLE; }
    }
    rt.mode = mode;
    return SBCUDA_OK;
}

/* One kernel launch for every (slab, block) of the transfer. Needs every host
 * page inside a range registered with sbcuda_host_register; returns
 * SBCUDA_UNAVAILABLE (nothing copied) otherwise. */
static int copy_kernel(const sbcuda_slab *slabs, int n_slabs, const int32_t *ids, int n, void *const *pages, int dir,
                       char *err, size_t err_len) {
    uint64_t count = (uint64_t)n * (uint64_t)n_slabs;
    if (count == 0) return SBCUDA_OK;
    if (count > rt.desc_cap) {
        free(rt.desc_host);
        if (rt.desc_dev) rt.Free((void *)(uintptr_t)rt.desc_dev);
        rt.desc_host = malloc(count * 24);
        void *d = NULL;
        if (!rt.desc_host || rt.Malloc(&d, count * 24) != 0) {
            rt.desc_cap = 0; rt.desc_dev = 0;
            say(err, err_len, "%s", "cannot allocate the copy descriptors", 0);
            return SBCUDA_ERROR;
        }
        rt.desc_dev = (uint64_t)(uintptr_t)d;
        rt.desc_cap = count;
    }
    uint64_t page_bytes = 0;
    for (int s = 0; s < n_slabs; s++) page_bytes += slabs[s].bytes;
    uint64_t k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t host = device_alias(pages[i]);
        if (!host || !device_alias((const char *)pages[i] + page_bytes - 1)) return SBCUDA_UNAVAILABLE;
        uint64_t off = 0;
        for (int s = 0; s < n_slabs; s++) {
            uint64_t dev = slabs[s].base + (uint64_t)ids[i] * slabs[s].stride;
            rt.desc_host[3 * k] = dir == D2H ? dev : host + off;
            rt.desc_host[3 * k + 1] = dir == D2H ? host + off : dev;
            rt.desc_host[3 * k + 2] = slabs[s].bytes;
            off += slabs[s].bytes;
            k++;
        }
    }
    cudaError_t e = rt.MemcpyAsync((void *)(uintptr_t)rt.desc_dev, rt.desc_host, count * 24, H2D, rt.stream);
    if (e) { say(err, err_len, "descriptor upload failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    uint64_t desc = rt.desc_dev;
    int total = (int)count;
    void *params[] = { &desc, &total };
    unsigned grid = total < 65535 ? (unsigned)total : 65535;
    int r = rt.LaunchKernel(rt.function, grid, 1, 1, 512, 1, 1, 0, rt.stream, params, NULL);
    if (r) { say(err, err_len, "%s", "cuLaunchKernel failed", r); return SBCUDA_ERROR; }
    e = rt.StreamSynchronize(rt.stream);
    if (e) { say(err, err_len, "copy kernel failed: %s", cuda_error(e), 0); return SBCUDA_ERROR; }
    return SBCUDA_OK;
}

static int copy_blocks(const sbcuda_slab *slabs, int n_slabs, const int32_t *ids, int n, void *const *pages, int dir,
                       char *err, size_t err_len) {
    REQUIRE_CUDA();
    if (n_slabs <= 0 || n < 0 || (n && (!ids || !pages))) { say(err, err_len, "%s", "bad arguments", 0); return SBCUDA_BAD_ARGUMENT; }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0) { say(err, err_len, "%s", "negative block id", 0); return SBCUDA_BAD_ARGUMENT; }
    if (rt.mode != 1 && rt.kernel_ok) {
        int r = copy_kernel(slabs, n_slabs, ids, n, pages, dir, err, err_len);
        if (r != SBCUDA_UNAVAILABLE) return r;
        if (rt.mode == 2) { say(err, err_len, "%s", "kernel mode: every page must lie in a range given to sbcuda_host_register", 0); return SBCUDA_BAD_ARGUMENT; }
    }
    uint64_t page_bytes = 0;
    for (int s = 0; s < n_slabs; s++) page_bytes += slabs[s].bytes;
    uint64_t off = 0;
    for (int s = 0; s < n_slabs; s++) {
        const sbcuda_slab *sl = &slabs[s];
        int i = 0;
        while (i < n) {
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

/* A stand-in CUDA runtime for testing the CUDA shim without a GPU. "Device"
 * memory is host memory, but the runtime keeps CUDA's rules so the shim is
 * held to them:
 *   - device memory is what cudaMalloc returned (or, with
 *     FAKE_CUDART_UNREGISTERED_IS_DEVICE=1, any memory not registered as
 *     host memory: how a CPU engine's KV tensors stand in for GPU ones);
 *   - host memory for async copies must be registered (cudaHostRegister);
 *   - cudaMemcpyAsync checks the direction against both ranges and rejects
 *     a copy issued the wrong way (cudaErrorInvalidValue, with the reason
 *     in cudaGetErrorString);
 *   - async copies complete only at cudaStreamSynchronize, in order, so a
 *     caller that reads a destination before synchronising sees old bytes.
 * Counters for tests: fake_memcpy_calls (copies accepted), fake_rejected,
 * fake_synchronizations, fake_pending (queued, not yet done). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { H2H = 0, H2D = 1, D2H = 2, D2D = 3 };
enum { ERR_INVALID_VALUE = 1, ERR_MEMORY = 2, ERR_NO_IPC = 201, ERR_ALREADY_REGISTERED = 712, ERR_NOT_REGISTERED = 713 };

typedef struct { uintptr_t base; size_t len; } range;
typedef struct { void *dst; const void *src; size_t n; } copy_op;

#define MAX_RANGES 4096
static range device_ranges[MAX_RANGES], host_ranges[MAX_RANGES];
static int n_device, n_host;
static copy_op *queue;
static size_t n_queue, cap_queue;
static char last_error[512] = "fake error";
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int fake_memcpy_calls = 0;
int fake_rejected = 0;
int fake_synchronizations = 0;
int fake_pending = 0;

static int inside(const range *r, int n, const void *p, size_t len) {
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < n; i++)
        if (a >= r[i].base && a + len <= r[i].base + r[i].len) return 1;
    return 0;
}

static int overlaps(const range *r, int n, const void *p, size_t len) {
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < n; i++)
        if (a < r[i].base + r[i].len && r[i].base < a + len) return 1;
    return 0;
}

static int unregistered_is_device(void) {
    const char *v = getenv("FAKE_CUDART_UNREGISTERED_IS_DEVICE");
    return v && v[0] == '1';
}

static int is_device(const void *p, size_t len) {
    if (inside(device_ranges, n_device, p, len)) return 1;
    return unregistered_is_device() && !overlaps(host_ranges, n_host, p, len);
}

static int is_host(const void *p, size_t len) { return inside(host_ranges, n_host, p, len); }

static int reject(const char *why, const void *dst, const void *src, size_t n) {
    snprintf(last_error, sizeof last_error, "fake: %s (dst %p, src %p, %zu bytes)", why, dst, src, n);
    fake_rejected++;
    return ERR_INVALID_VALUE;
}

int cudaGetDeviceCount(int *n) { *n = 1; return 0; }
int cudaSetDevice(int d) { return d == 0 ? 0 : ERR_INVALID_VALUE; }
int cudaRuntimeGetVersion(int *v) { *v = 99999; return 0; }
int cudaStreamCreateWithFlags(void **s, unsigned f) { (void)f; *s = (void *)1; return 0; }

int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *s) {
    (void)s;
    pthread_mutex_lock(&lock);
    int e = 0;
    switch (kind) {
    case H2D:
        if (!is_host(src, n)) e = reject("H2D copy from memory that is not registered host memory", dst, src, n);
        else if (!is_device(dst, n)) e = reject("H2D copy into memory that is not device memory", dst, src, n);
        break;
    case D2H:
        if (!is_device(src, n)) e = reject("D2H copy from memory that is not device memory", dst, src, n);
        else if (!is_host(dst, n)) e = reject("D2H copy into memory that is not registered host memory", dst, src, n);
        break;
    case D2D:
        if (!is_device(src, n) || !is_device(dst, n)) e = reject("D2D copy outside device memory", dst, src, n);
        break;
    default:
        e = reject("copy kind not supported by the shim's contract", dst, src, n);
    }
    if (!e) {
        if (n_queue == cap_queue) {
            size_t cap = cap_queue ? cap_queue * 2 : 256;
            copy_op *q = realloc(queue, cap * sizeof *q);
            if (!q) { pthread_mutex_unlock(&lock); return ERR_MEMORY; }
            queue = q;
            cap_queue = cap;
        }
        queue[n_queue++] = (copy_op){dst, src, n};
        fake_pending = (int)n_queue;
        fake_memcpy_calls++;
    }
    pthread_mutex_unlock(&lock);
    return e;
}

int cudaStreamSynchronize(void *s) {
    (void)s;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_queue; i++) memcpy(queue[i].dst, queue[i].src, queue[i].n);
    n_queue = 0;
    fake_pending = 0;
    fake_synchronizations++;
    pthread_mutex_unlock(&lock);
    return 0;
}

int cudaHostRegister(void *p, size_t n, unsigned f) {
    (void)f;
    pthread_mutex_lock(&lock);
    int e = 0;
    if (overlaps(host_ranges, n_host, p, n)) {
        snprintf(last_error, sizeof last_error, "fake: %p is already registered", p);
        e = ERR_ALREADY_REGISTERED;
    } else if (n_host == MAX_RANGES) {
        e = ERR_MEMORY;
    } else {
        host_ranges[n_host++] = (range){(uintptr_t)p, n};
    }
    pthread_mutex_unlock(&lock);
    return e;
}

int cudaHostUnregister(void *p) {
    pthread_mutex_lock(&lock);
    int e = ERR_NOT_REGISTERED;
    for (int i = 0; i < n_host; i++)
        if (host_ranges[i].base == (uintptr_t)p) {
            host_ranges[i] = host_ranges[--n_host];
            e = 0;
            break;
        }
    if (e) snprintf(last_error, sizeof last_error, "fake: %p was not registered", p);
    pthread_mutex_unlock(&lock);
    return e;
}

int cudaIpcOpenMemHandle(void **p, char h[64], unsigned f) { (void)p; (void)h; (void)f; return ERR_NO_IPC; }
int cudaIpcCloseMemHandle(void *p) { (void)p; return 0; }

const char *cudaGetErrorString(int e) {
    if (e == ERR_NO_IPC) return "fake: no IPC";
    return last_error;
}

int cudaMalloc(void **p, size_t n) {
    pthread_mutex_lock(&lock);
    int e = 0;
    *p = n_device < MAX_RANGES ? malloc(n) : NULL;
    if (*p) device_ranges[n_device++] = (range){(uintptr_t)*p, n};
    else e = ERR_MEMORY;
    pthread_mutex_unlock(&lock);
    return e;
}

int cudaFree(void *p) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_device; i++)
        if (device_ranges[i].base == (uintptr_t)p) {
            device_ranges[i] = device_ranges[--n_device];
            break;
        }
    pthread_mutex_unlock(&lock);
    free(p);
    return 0;
}

int cudaHostGetDevicePointer(void **d, void *h, unsigned f) {
    (void)f;
    pthread_mutex_lock(&lock);
    int ok = is_host(h, 1);
    pthread_mutex_unlock(&lock);
    if (!ok) return ERR_INVALID_VALUE;
    *d = h;
    return 0;
}

int cudaDeviceGetAttribute(int *v, int attr, int dev) { (void)dev; *v = attr == 75 ? 9 : 0; return 0; }

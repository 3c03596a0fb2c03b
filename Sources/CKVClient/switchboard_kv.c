/* The C client of the KV agent; see include/switchboard_kv.h. */
#define _GNU_SOURCE
#include "switchboard_kv.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x564B4253u
#define HEADER 24
#define VERSION 1u
#define MAX_BODY (4u << 20)

enum { OP_HELLO = 1, OP_PUT_ALLOC, OP_PUT_COMMIT, OP_PUT_ABORT, OP_GET, OP_RELEASE, OP_EXISTS, OP_PREFETCH, OP_DELETE, OP_STATS };

struct sbkv_client {
    int fd;
    uint32_t page_size;
    uint64_t pages;
    uint8_t *base;
    uint32_t next_id;
    int broken;
    uint8_t *reply;      /* last reply body */
    uint32_t reply_len;
    uint32_t reply_cap;
    char error[256];
};

static void set_error(sbkv_client *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i); return v; }

static int io_fail(sbkv_client *c, const char *what) {
    set_error(c, "KV agent connection %s", what);
    c->broken = 1;
    return SBKV_E_IO;
}

/* Waits until fd is readable or the deadline passes. */
static int wait_readable(int fd, uint64_t deadline) {
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) return 0;
        int ms = (int)((deadline - now + 999999) / 1000000);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, ms);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Reads exactly len bytes (collecting a passed descriptor into *fd_out if given). */
static int read_full(sbkv_client *c, uint8_t *buf, size_t len, uint64_t deadline, int *fd_out) {
    size_t got = 0;
    while (got < len) {
        int w = wait_readable(c->fd, deadline);
        if (w == 0) return io_fail(c, "timed out waiting for the agent");
        if (w < 0) return io_fail(c, "failed (poll)");
        struct iovec iov = { .iov_base = buf + got, .iov_len = len - got };
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
        ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return io_fail(c, "failed (recv)");
        if (n == 0) return io_fail(c, "closed by the agent");
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                int fd;
                memcpy(&fd, CMSG_DATA(h), sizeof fd);
                if (fd_out && *fd_out < 0) *fd_out = fd; else close(fd);
            }
        }
        got += (size_t)n;
    }
    return 0;
}

static int send_full(sbkv_client *c, const uint8_t *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return io_fail(c, "failed (send)");
        off += (size_t)n;
    }
    return 0;
}

/* One request/response. The reply body lands in c->reply. */
static int call(sbkv_client *c, uint16_t op, const uint8_t *body, uint32_t len, uint32_t timeout_ms, int *fd_out) {
    if (c->broken) { set_error(c, "KV agent connection is broken; reconnect"); return SBKV_E_IO; }
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : 5000) * 1000000ull;
    uint8_t head[HEADER];
    uint32_t id = c->next_id++;
    put32(head, MAGIC);
    put32(head + 4, len);
    head[8] = (uint8_t)op; head[9] = (uint8_t)(op >> 8);
    head[10] = head[11] = 0;
    put32(head + 12, id);
    put64(head + 16, deadline);
    int rc;
    if ((rc = send_full(c, head, HEADER)) || (len && (rc = send_full(c, body, len)))) return rc;
    uint8_t rh[HEADER];
    if ((rc = read_full(c, rh, HEADER, deadline, fd_out))) return rc;
    uint32_t rlen = get32(rh + 4);
    if (get32(rh) != MAGIC || rlen > MAX_BODY) return io_fail(c, "returned a malformed reply");
    if (rlen + 1 > c->reply_cap) {
        uint8_t *p = realloc(c->reply, rlen + 1);
        if (!p) return io_fail(c, "out of memory");
        c->reply = p;
        c->reply_cap = rlen + 1;
    }
    if ((rc = read_full(c, c->reply, rlen, deadline, fd_out))) return rc;
    c->reply[rlen] = 0;
    c->reply_len = rlen;
    uint16_t status = (uint16_t)(rh[10] | rh[11] << 8);
    if (get32(rh + 12) != id) return io_fail(c, "answered out of order");
    if (status) {
        set_error(c, "%s", (const char *)c->reply);
        return status;
    }
    return 0;
}

sbkv_client *sbkv_connect(const char *path, uint32_t page_size, uint32_t timeout_ms, char *err, size_t err_len) {
    sbkv_client *c = calloc(1, sizeof *c);
    if (!c) { if (err && err_len) snprintf(err, err_len, "out of memory"); return NULL; }
    c->fd = -1;
    c->next_id = 1;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) { set_error(c, "socket path too long: %s", path); goto fail; }
    strcpy(sa.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        set_error(c, "cannot connect to the KV agent at %s: %s", path, strerror(errno));
        goto fail;
    }
    uint8_t hello[8];
    put32(hello, VERSION);
    put32(hello + 4, page_size);
    int pool_fd = -1;
    if (call(c, OP_HELLO, hello, sizeof hello, timeout_ms, &pool_fd)) goto fail;
    if (c->reply_len != 16 || pool_fd < 0) {
        set_error(c, "malformed HELLO reply from the KV agent");
        if (pool_fd >= 0) close(pool_fd);
        goto fail;
    }
    c->page_size = get32(c->reply + 4);
    c->pages = get64(c->reply + 8);
    uint64_t bytes = (uint64_t)c->page_size * c->pages;
    struct stat st;
    if (fstat(pool_fd, &st) != 0 || (uint64_t)st.st_size < bytes) {
        set_error(c, "the pool descriptor is smaller than announced");
        close(pool_fd);
        goto fail;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, pool_fd, 0);
    close(pool_fd);
    if (p == MAP_FAILED) { set_error(c, "mmap of the pool (%llu bytes) failed: %s", (unsigned long long)bytes, strerror(errno)); goto fail; }
    c->base = p;
    return c;
fail:
    if (err && err_len) snprintf(err, err_len, "%s", c->error);
    sbkv_close(c);
    return NULL;
}

void sbkv_close(sbkv_client *c) {
    if (!c) return;
    if (c->base) munmap(c->base, (size_t)c->page_size * c->pages);
    if (c->fd >= 0) close(c->fd);
    free(c->reply);
    free(c);
}

const char *sbkv_last_error(const sbkv_client *c) { return c ? c->error : "no client"; }
uint32_t sbkv_page_size(const sbkv_client *c) { return c->page_size; }
uint64_t sbkv_pages(const sbkv_client *c) { return c->pages; }

void *sbkv_page(sbkv_client *c, int32_t page) {
    if (page < 0 || (uint64_t)page >= c->pages) return NULL;
    return c->base + (size_t)page * c->page_size;
}

/* Body: [u32 prefix (optional)] u32 n, n keys. */
static uint8_t *keys_body(const sbkv_key *keys, uint32_t n, int with_lease, uint32_t lease_ms, uint32_t *len) {
    uint32_t off = with_lease ? 4 : 0;
    *len = off + 4 + 16 * n;
    uint8_t *b = malloc(*len ? *len : 1);
    if (!b) return NULL;
    if (with_lease) put32(b, lease_ms);
    put32(b + off, n);
    for (uint32_t i = 0; i < n; i++) {
        put64(b + off + 4 + 16 * i, keys[i].high);
        put64(b + off + 12 + 16 * i, keys[i].low);
    }
    return b;
}

static int id_and_pages(sbkv_client *c, uint64_t *id, int32_t *pages, uint32_t max, uint32_t *count) {
    if (c->reply_len < 12) return io_fail(c, "returned a malformed reply");
    uint32_t n = get32(c->reply + 8);
    if (n > max || c->reply_len != 12 + 4 * n) return io_fail(c, "returned a malformed reply");
    *id = get64(c->reply);
    for (uint32_t i = 0; i < n; i++) pages[i] = (int32_t)get32(c->reply + 12 + 4 * i);
    if (count) *count = n;
    return 0;
}

static int keys_call(sbkv_client *c, uint16_t op, const sbkv_key *keys, uint32_t n, int with_lease, uint32_t lease_ms,
                     uint32_t timeout_ms) {
    uint32_t len;
    uint8_t *b = keys_body(keys, n, with_lease, lease_ms, &len);
    if (!b) { set_error(c, "out of memory"); return SBKV_E_INTERNAL; }
    int rc = call(c, op, b, len, timeout_ms, NULL);
    free(b);
    return rc;
}

int sbkv_reserve(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t lease_ms, uint32_t timeout_ms,
                 uint64_t *reservation, int32_t *pages) {
    int rc = keys_call(c, OP_PUT_ALLOC, keys, n, 1, lease_ms, timeout_ms);
    return rc ? rc : id_and_pages(c, reservation, pages, n, NULL);
}

static int id_call(sbkv_client *c, uint16_t op, uint64_t id, uint32_t timeout_ms) {
    uint8_t b[8];
    put64(b, id);
    return call(c, op, b, 8, timeout_ms, NULL);
}

static int u32_reply(sbkv_client *c, uint32_t *out) {
    if (c->reply_len != 4) return io_fail(c, "returned a malformed reply");
    if (out) *out = get32(c->reply);
    return 0;
}

int sbkv_commit(sbkv_client *c, uint64_t reservation, uint32_t timeout_ms, uint32_t *stored) {
    int rc = id_call(c, OP_PUT_COMMIT, reservation, timeout_ms);
    return rc ? rc : u32_reply(c, stored);
}

int sbkv_abort(sbkv_client *c, uint64_t reservation, uint32_t timeout_ms) {
    return id_call(c, OP_PUT_ABORT, reservation, timeout_ms);
}

int sbkv_lease(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t lease_ms, uint32_t timeout_ms,
               uint64_t *lease, int32_t *pages, uint32_t *hits) {
    int rc = keys_call(c, OP_GET, keys, n, 1, lease_ms, timeout_ms);
    return rc ? rc : id_and_pages(c, lease, pages, n, hits);
}

int sbkv_release(sbkv_client *c, uint64_t lease, uint32_t timeout_ms) { return id_call(c, OP_RELEASE, lease, timeout_ms); }

static int count_call(sbkv_client *c, uint16_t op, const sbkv_key *keys, uint32_t n, uint32_t timeout_ms, uint32_t *count) {
    int rc = keys_call(c, op, keys, n, 0, 0, timeout_ms);
    return rc ? rc : u32_reply(c, count);
}

int sbkv_exists(sbkv_client *c, const sbkv_key *k, uint32_t n, uint32_t t, uint32_t *count) { return count_call(c, OP_EXISTS, k, n, t, count); }
int sbkv_prefetch(sbkv_client *c, const sbkv_key *k, uint32_t n, uint32_t t, uint32_t *count) { return count_call(c, OP_PREFETCH, k, n, t, count); }
int sbkv_delete(sbkv_client *c, const sbkv_key *k, uint32_t n, uint32_t t, uint32_t *count) { return count_call(c, OP_DELETE, k, n, t, count); }

int sbkv_stats(sbkv_client *c, char *buf, size_t len, uint32_t timeout_ms) {
    int rc = call(c, OP_STATS, NULL, 0, timeout_ms, NULL);
    if (!rc && len) snprintf(buf, len, "%s", (const char *)c->reply);
    return rc;
}

int sbkv_put_blocks(sbkv_client *c, const sbkv_key *keys, uint32_t n, const void *const *src, uint32_t timeout_ms,
                    uint32_t *stored) {
    if (stored) *stored = 0;
    if (n == 0) return 0;
    int32_t *pages = malloc(sizeof(int32_t) * n);
    if (!pages) { set_error(c, "out of memory"); return SBKV_E_INTERNAL; }
    uint64_t id = 0;
    int rc = sbkv_reserve(c, keys, n, timeout_ms, timeout_ms, &id, pages);
    if (!rc && id) {
        for (uint32_t i = 0; i < n; i++)
            if (pages[i] >= 0) memcpy(sbkv_page(c, pages[i]), src[i], c->page_size);
        rc = sbkv_commit(c, id, timeout_ms, stored);
    }
    free(pages);
    return rc;
}

int sbkv_get_blocks(sbkv_client *c, const sbkv_key *keys, uint32_t n, void *const *dst, uint32_t timeout_ms,
                    uint32_t *hits) {
    if (hits) *hits = 0;
    if (n == 0) return 0;
    int32_t *pages = malloc(sizeof(int32_t) * n);
    if (!pages) { set_error(c, "out of memory"); return SBKV_E_INTERNAL; }
    uint64_t id = 0;
    uint32_t h = 0;
    int rc = sbkv_lease(c, keys, n, timeout_ms, timeout_ms, &id, pages, &h);
    if (!rc && id) {
        for (uint32_t i = 0; i < h; i++) memcpy(dst[i], sbkv_page(c, pages[i]), c->page_size);
        rc = sbkv_release(c, id, timeout_ms);
        if (!rc && hits) *hits = h;
    }
    free(pages);
    return rc;
}

/* ---- keys: SipHash-2-4 with 128-bit output, as the Swift BlockKeySpace ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                           \
    do {                                                                   \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);          \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                             \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                             \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);          \
    } while (0)

static void siphash128(uint64_t k0, uint64_t k1, const uint8_t *m, size_t len, uint64_t *high, uint64_t *low) {
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    v1 ^= 0xee;
    size_t end = len - len % 8;
    for (size_t i = 0; i < end; i += 8) {
        uint64_t w = get64(m + i);
        v3 ^= w;
        SIPROUND; SIPROUND;
        v0 ^= w;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = end, k = 0; i < len; i++, k++) last |= (uint64_t)m[i] << (8 * k);
    v3 ^= last;
    SIPROUND; SIPROUND;
    v0 ^= last;
    v2 ^= 0xee;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    *low = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    *high = v0 ^ v1 ^ v2 ^ v3;
}

void sbkv_keyspace_init(sbkv_keyspace *ks, const char *ns, const char *model, const char *layout, uint32_t block_size) {
    char bs[16];
    snprintf(bs, sizeof bs, "%u", block_size);
    const char *parts[4] = { ns, model, layout, bs };
    size_t total = 0;
    for (int i = 0; i < 4; i++) total += 4 + strlen(parts[i]);
    uint8_t *m = malloc(total ? total : 1), *p = m;
    for (int i = 0; i < 4; i++) {
        uint32_t n = (uint32_t)strlen(parts[i]);
        put32(p, n);
        memcpy(p + 4, parts[i], n);
        p += 4 + n;
    }
    siphash128(0x737769746368626Full, 0x6172642D6B766361ull, m, total, &ks->k0, &ks->k1);
    free(m);
    ks->block_size = block_size;
}

size_t sbkv_keys_for_tokens(const sbkv_keyspace *ks, const uint32_t *tokens, size_t n_tokens, sbkv_key *out, size_t max_out) {
    size_t bs = ks->block_size, n = bs ? n_tokens / bs : 0;
    if (n > max_out) n = max_out;
    uint8_t *m = malloc(16 + 4 * bs);
    if (!m) return 0;
    uint64_t high = 0, low = 0;
    for (size_t b = 0; b < n; b++) {
        put64(m, high);
        put64(m + 8, low);
        for (size_t t = 0; t < bs; t++) put32(m + 16 + 4 * t, tokens[b * bs + t]);
        siphash128(ks->k0, ks->k1, m, 16 + 4 * bs, &high, &low);
        out[b].high = high;
        out[b].low = low;
    }
    free(m);
    return n;
}

/*
 * switchboard_kv.h: C client of Switchboard's KV-cache node agent, for
 * engine connectors (the vLLM connector loads it with ctypes).
 *
 * The agent shares its L1 pool with every engine: sbkv_connect() maps it,
 * sbkv_page() gives the address of a page, and block data is copied by the
 * caller (memcpy, or a CUDA copy into a registered mapping). The socket only
 * carries keys and page numbers. Protocol: docs/kv-agent.md.
 *
 * Every call takes a timeout in milliseconds; it is sent to the agent as an
 * absolute CLOCK_MONOTONIC deadline and also bounds the wait for the reply.
 * Calls return 0 on success or a status (SBKV_*); sbkv_last_error() explains.
 * After SBKV_E_IO the connection is unusable: close it and reconnect later.
 * A client is not thread-safe: one per thread, or a lock around it.
 */
#ifndef SWITCHBOARD_KV_H
#define SWITCHBOARD_KV_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBKV_OK = 0,
    SBKV_E_BAD_REQUEST = 1,
    SBKV_E_BAD_SIZE = 2,
    SBKV_E_UNKNOWN_ID = 3,
    SBKV_E_DEADLINE = 4,
    SBKV_E_VERSION = 5,
    SBKV_E_TOO_LARGE = 6,
    SBKV_E_NOT_READY = 7,
    SBKV_E_INTERNAL = 8,
    SBKV_E_IO = 100, /* connection failed, timed out or closed */
};

/* Page numbers returned by sbkv_reserve. */
#define SBKV_PAGE_PRESENT (-1) /* already stored (or being stored): nothing to write */
#define SBKV_PAGE_NO_SPACE (-2) /* every page is reserved or pinned */

typedef struct { uint64_t high, low; } sbkv_key;
typedef struct sbkv_client sbkv_client;

/* Connects and maps the pool. page_size: the engine's block size in bytes
 * (0 = accept the agent's). NULL on failure, with the reason in err. */
sbkv_client *sbkv_connect(const char *socket_path, uint32_t page_size, uint32_t timeout_ms, char *err, size_t err_len);
void sbkv_close(sbkv_client *c);
const char *sbkv_last_error(const sbkv_client *c);
uint32_t sbkv_page_size(const sbkv_client *c);
uint64_t sbkv_pages(const sbkv_client *c);
/* Address of a page in this process's mapping (NULL if out of range). */
void *sbkv_page(sbkv_client *c, int32_t page);

/* Put, step by step: pages for keys (see SBKV_PAGE_*), fill them, commit. */
int sbkv_reserve(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t lease_ms, uint32_t timeout_ms,
                 uint64_t *reservation, int32_t *pages);
int sbkv_commit(sbkv_client *c, uint64_t reservation, uint32_t timeout_ms, uint32_t *stored);
int sbkv_abort(sbkv_client *c, uint64_t reservation, uint32_t timeout_ms);
/* Get, step by step: pins the longest stored prefix (*hits pages), copy, release. */
int sbkv_lease(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t lease_ms, uint32_t timeout_ms,
               uint64_t *lease, int32_t *pages, uint32_t *hits);
int sbkv_release(sbkv_client *c, uint64_t lease, uint32_t timeout_ms);
int sbkv_exists(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t timeout_ms, uint32_t *count);
int sbkv_prefetch(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t timeout_ms, uint32_t *count);
int sbkv_delete(sbkv_client *c, const sbkv_key *keys, uint32_t n, uint32_t timeout_ms, uint32_t *count);
/* The agent's counters as JSON (NUL-terminated, truncated to len). */
int sbkv_stats(sbkv_client *c, char *buf, size_t len, uint32_t timeout_ms);

/* Whole-block conveniences with memcpy: src[i] / dst[i] point at page_size bytes. */
int sbkv_put_blocks(sbkv_client *c, const sbkv_key *keys, uint32_t n, const void *const *src, uint32_t timeout_ms,
                    uint32_t *stored);
int sbkv_get_blocks(sbkv_client *c, const sbkv_key *keys, uint32_t n, void *const *dst, uint32_t timeout_ms,
                    uint32_t *hits);

/* Block keys, identical to the Swift BlockKeySpace: chained SipHash-2-4-128
 * over (parent key, block tokens), keyed by namespace, model, layout and
 * block size. Writes the keys of the full blocks of tokens (at most max_out);
 * returns how many. */
typedef struct { uint64_t k0, k1; uint32_t block_size; } sbkv_keyspace;
void sbkv_keyspace_init(sbkv_keyspace *ks, const char *ns, const char *model, const char *layout, uint32_t block_size);
size_t sbkv_keys_for_tokens(const sbkv_keyspace *ks, const uint32_t *tokens, size_t n_tokens, sbkv_key *out, size_t max_out);

#ifdef __cplusplus
}
#endif
#endif

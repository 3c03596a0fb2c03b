/* Switchboard's RDMA shim: the few libibverbs calls a one-sided KV data
 * path needs (device probe, protection domain, registered memory, a
 * reliable-connected queue pair, RDMA READ/WRITE, completion polling).
 *
 * libibverbs is loaded at run time (dlopen "libibverbs.so.1"), so the shim
 * builds and loads on machines without it and reports why RDMA is
 * unavailable instead of failing to start. Built without the libibverbs
 * headers, every call reports "built without libibverbs headers".
 *
 * Status: the probe is what the KV server and agent call today; the queue
 * pair and one-sided operations are implemented but have not run on RDMA
 * hardware (none was available), and the KV tier's data path is TCP. */
#ifndef SWITCHBOARD_RDMA_H
#define SWITCHBOARD_RDMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of RDMA devices (> 0), 0 when none, -1 when libibverbs cannot be
 * used; `msg` (may be NULL) explains (device names, or why not). */
int sbrdma_probe(char *msg, size_t msg_len);

typedef struct sbrdma_ctx sbrdma_ctx;

/* What a peer needs to reach this side's queue pair and memory (sent over
 * the TCP control connection). */
typedef struct {
    uint32_t qpn;
    uint32_t psn;
    uint16_t lid;
    uint8_t gid[16];
    uint64_t addr;
    uint64_t length;
    uint32_t rkey;
} sbrdma_endpoint;

/* Opens `device` (NULL: the first), port 1, registers [addr, addr+len) for
 * local and remote read/write, creates a CQ and an RC queue pair. NULL on
 * failure, with the reason in `msg`. */
sbrdma_ctx *sbrdma_open(const char *device, void *addr, size_t len, char *msg, size_t msg_len);
int sbrdma_local(const sbrdma_ctx *c, sbrdma_endpoint *out);
/* Moves the queue pair to ready-to-send against `remote`. 0 or -1 (msg). */
int sbrdma_connect(sbrdma_ctx *c, const sbrdma_endpoint *remote, char *msg, size_t msg_len);
/* Posts one RDMA READ (remote -> local) or WRITE (local -> remote);
 * completion through sbrdma_poll with `wr_id`. 0 or -errno. */
int sbrdma_read(sbrdma_ctx *c, uint64_t local_offset, uint64_t remote_addr, uint32_t rkey, uint32_t len, uint64_t wr_id);
int sbrdma_write(sbrdma_ctx *c, uint64_t local_offset, uint64_t remote_addr, uint32_t rkey, uint32_t len, uint64_t wr_id);
/* Up to `max` completions: their ids and statuses (0 = success). Returns the
 * count, or -1 on a polling error. */
int sbrdma_poll(sbrdma_ctx *c, uint64_t *wr_ids, int *statuses, int max);
void sbrdma_close(sbrdma_ctx *c);

#ifdef __cplusplus
}
#endif
#endif

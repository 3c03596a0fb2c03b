/* See include/switchboard_rdma.h. */
#include "switchboard_rdma.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(char *msg, size_t len, const char *fmt, ...) {
    if (!msg || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

#if __has_include(<infiniband/verbs.h>)
#include <infiniband/verbs.h>

/* The exported entry points used (ibv_post_send and ibv_poll_cq are inline
 * in verbs.h and go through the context's ops table). */
static struct {
    int loaded;
    char error[256];
    struct ibv_device **(*get_device_list)(int *);
    void (*free_device_list)(struct ibv_device **);
    const char *(*get_device_name)(struct ibv_device *);
    struct ibv_context *(*open_device)(struct ibv_device *);
    int (*close_device)(struct ibv_context *);
    struct ibv_pd *(*alloc_pd)(struct ibv_context *);
    int (*dealloc_pd)(struct ibv_pd *);
    struct ibv_mr *(*reg_mr)(struct ibv_pd *, void *, size_t, int);
    int (*dereg_mr)(struct ibv_mr *);
    struct ibv_cq *(*create_cq)(struct ibv_context *, int, void *, struct ibv_comp_channel *, int);
    int (*destroy_cq)(struct ibv_cq *);
    struct ibv_qp *(*create_qp)(struct ibv_pd *, struct ibv_qp_init_attr *);
    int (*destroy_qp)(struct ibv_qp *);
    int (*modify_qp)(struct ibv_qp *, struct ibv_qp_attr *, int);
    int (*query_port)(struct ibv_context *, uint8_t, struct ibv_port_attr *);
    int (*query_gid)(struct ibv_context *, uint8_t, int, union ibv_gid *);
} V;

static int load(void) {
    if (V.loaded) return V.loaded > 0 ? 0 : -1;
    void *h = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(V.error, sizeof V.error, "libibverbs not loadable: %s", dlerror());
        V.loaded = -1;
        return -1;
    }
#define SYM(field, name) \
    if (!(*(void **)&V.field = dlsym(h, name))) { \
        snprintf(V.error, sizeof V.error, "libibverbs lacks %s", name); V.loaded = -1; return -1; }
    SYM(get_device_list, "ibv_get_device_list")
    SYM(free_device_list, "ibv_free_device_list")
    SYM(get_device_name, "ibv_get_device_name")
    SYM(open_device, "ibv_open_device")
    SYM(close_device, "ibv_close_device")
    SYM(alloc_pd, "ibv_alloc_pd")
    SYM(dealloc_pd, "ibv_dealloc_pd")
    SYM(reg_mr, "ibv_reg_mr")
    SYM(dereg_mr, "ibv_dereg_mr")
    SYM(create_cq, "ibv_create_cq")
    SYM(destroy_cq, "ibv_destroy_cq")
    SYM(create_qp, "ibv_create_qp")
    SYM(destroy_qp, "ibv_destroy_qp")
    SYM(modify_qp, "ibv_modify_qp")
    SYM(query_port, "ibv_query_port")
    SYM(query_gid, "ibv_query_gid")
#undef SYM
    V.loaded = 1;
    return 0;
}

int sbrdma_probe(char *msg, size_t msg_len) {
    if (load() != 0) { say(msg, msg_len, "%s", V.error); return -1; }
    int n = 0;
    struct ibv_device **list = V.get_device_list(&n);
    if (!list) { say(msg, msg_len, "no RDMA device (ibv_get_device_list: %s)", strerror(errno)); return 0; }
    if (n == 0) { V.free_device_list(list); say(msg, msg_len, "no RDMA device"); return 0; }
    size_t at = 0;
    if (msg && msg_len) msg[0] = 0;
    for (int i = 0; i < n && msg && at + 1 < msg_len; i++) {
        int w = snprintf(msg + at, msg_len - at, "%s%s", i ? "," : "", V.get_device_name(list[i]));
        if (w < 0) break;
        at += (size_t)w;
    }
    V.free_device_list(list);
    return n;
}

struct sbrdma_ctx {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_mr *mr;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_port_attr port;
    union ibv_gid gid;
    uint32_t psn;
    char *base;
    size_t length;
};

void sbrdma_close(sbrdma_ctx *c) {
    if (!c) return;
    if (c->qp) V.destroy_qp(c->qp);
    if (c->cq) V.destroy_cq(c->cq);
    if (c->mr) V.dereg_mr(c->mr);
    if (c->pd) V.dealloc_pd(c->pd);
    if (c->ctx) V.close_device(c->ctx);
    free(c);
}

sbrdma_ctx *sbrdma_open(const char *device, void *addr, size_t len, char *msg, size_t msg_len) {
    if (load() != 0) { say(msg, msg_len, "%s", V.error); return NULL; }
    int n = 0;
    struct ibv_device **list = V.get_device_list(&n);
    if (!list || n == 0) { if (list) V.free_device_list(list); say(msg, msg_len, "no RDMA device"); return NULL; }
    struct ibv_device *dev = NULL;
    for (int i = 0; i < n && !dev; i++)
        if (!device || strcmp(device, V.get_device_name(list[i])) == 0) dev = list[i];
    if (!dev) { V.free_device_list(list); say(msg, msg_len, "no RDMA device named %s", device); return NULL; }
    sbrdma_ctx *c = calloc(1, sizeof *c);
    if (!c) { V.free_device_list(list); say(msg, msg_len, "out of memory"); return NULL; }
    c->ctx = V.open_device(dev);
    V.free_device_list(list);
    if (!c->ctx) { say(msg, msg_len, "ibv_open_device: %s", strerror(errno)); goto fail; }
    if (V.query_port(c->ctx, 1, &c->port)) { say(msg, msg_len, "ibv_query_port: %s", strerror(errno)); goto fail; }
    if (V.query_gid(c->ctx, 1, 0, &c->gid)) memset(&c->gid, 0, sizeof c->gid);
    if (!(c->pd = V.alloc_pd(c->ctx))) { say(msg, msg_len, "ibv_alloc_pd: %s", strerror(errno)); goto fail; }
    c->mr = V.reg_mr(c->pd, addr, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
    if (!c->mr) { say(msg, msg_len, "ibv_reg_mr of %zu bytes: %s", len, strerror(errno)); goto fail; }
    if (!(c->cq = V.create_cq(c->ctx, 256, NULL, NULL, 0))) { say(msg, msg_len, "ibv_create_cq: %s", strerror(errno)); goto fail; }
    struct ibv_qp_init_attr qa = {0};
    qa.send_cq = c->cq;
    qa.recv_cq = c->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = 128;
    qa.cap.max_recv_wr = 1;
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    if (!(c->qp = V.create_qp(c->pd, &qa))) { say(msg, msg_len, "ibv_create_qp: %s", strerror(errno)); goto fail; }
    struct ibv_qp_attr init = {0};
    init.qp_state = IBV_QPS_INIT;
    init.port_num = 1;
    init.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    if (V.modify_qp(c->qp, &init, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
        say(msg, msg_len, "ibv_modify_qp to INIT: %s", strerror(errno));
        goto fail;
    }
    c->psn = (uint32_t)(((uintptr_t)c >> 4) & 0xFFFFFF);
    c->base = addr;
    c->length = len;
    return c;
fail:
    sbrdma_close(c);
    return NULL;
}

int sbrdma_local(const sbrdma_ctx *c, sbrdma_endpoint *out) {
    if (!c || !out) return -1;
    memset(out, 0, sizeof *out);
    out->qpn = c->qp->qp_num;
    out->psn = c->psn;
    out->lid = c->port.lid;
    memcpy(out->gid, c->gid.raw, 16);
    out->addr = (uint64_t)(uintptr_t)c->base;
    out->length = c->length;
    out->rkey = c->mr->rkey;
    return 0;
}

int sbrdma_connect(sbrdma_ctx *c, const sbrdma_endpoint *r, char *msg, size_t msg_len) {
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = c->port.active_mtu;
    a.dest_qp_num = r->qpn;
    a.rq_psn = r->psn;
    a.max_dest_rd_atomic = 16;
    a.min_rnr_timer = 12;
    a.ah_attr.port_num = 1;
    a.ah_attr.dlid = r->lid;
    int roce = c->port.link_layer == IBV_LINK_LAYER_ETHERNET;
    if (roce) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, r->gid, 16);
        a.ah_attr.grh.hop_limit = 1;
        a.ah_attr.grh.sgid_index = 0;
    }
    if (V.modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                   IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER)) {
        say(msg, msg_len, "ibv_modify_qp to RTR: %s", strerror(errno));
        return -1;
    }
    struct ibv_qp_attr s = {0};
    s.qp_state = IBV_QPS_RTS;
    s.timeout = 14;
    s.retry_cnt = 7;
    s.rnr_retry = 7;
    s.sq_psn = c->psn;
    s.max_rd_atomic = 16;
    if (V.modify_qp(c->qp, &s, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                   IBV_QP_MAX_QP_RD_ATOMIC)) {
        say(msg, msg_len, "ibv_modify_qp to RTS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int post(sbrdma_ctx *c, enum ibv_wr_opcode op, uint64_t local_offset, uint64_t remote_addr, uint32_t rkey,
                uint32_t len, uint64_t wr_id) {
    if (!c || local_offset + len > c->length) return -EINVAL;
    struct ibv_sge sge = { .addr = (uint64_t)(uintptr_t)(c->base + local_offset), .length = len, .lkey = c->mr->lkey };
    struct ibv_send_wr wr = {0}, *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = rkey;
    int rc = ibv_post_send(c->qp, &wr, &bad);
    return rc ? -rc : 0;
}

int sbrdma_read(sbrdma_ctx *c, uint64_t lo, uint64_t ra, uint32_t rkey, uint32_t len, uint64_t id) {
    return post(c, IBV_WR_RDMA_READ, lo, ra, rkey, len, id);
}

int sbrdma_write(sbrdma_ctx *c, uint64_t lo, uint64_t ra, uint32_t rkey, uint32_t len, uint64_t id) {
    return post(c, IBV_WR_RDMA_WRITE, lo, ra, rkey, len, id);
}

int sbrdma_poll(sbrdma_ctx *c, uint64_t *ids, int *statuses, int max) {
    struct ibv_wc wc[32];
    if (max > 32) max = 32;
    int n = ibv_poll_cq(c->cq, max, wc);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        ids[i] = wc[i].wr_id;
        statuses[i] = (int)wc[i].status;
    }
    return n;
}

#else /* no libibverbs headers at build time */

int sbrdma_probe(char *msg, size_t msg_len) { say(msg, msg_len, "built without libibverbs headers (install libibverbs-dev)"); return -1; }
sbrdma_ctx *sbrdma_open(const char *d, void *a, size_t l, char *msg, size_t msg_len) {
    (void)d; (void)a; (void)l;
    say(msg, msg_len, "built without libibverbs headers (install libibverbs-dev)");
    return NULL;
}
int sbrdma_local(const sbrdma_ctx *c, sbrdma_endpoint *o) { (void)c; (void)o; return -1; }
int sbrdma_connect(sbrdma_ctx *c, const sbrdma_endpoint *r, char *m, size_t l) { (void)c; (void)r; say(m, l, "unavailable"); return -1; }
int sbrdma_read(sbrdma_ctx *c, uint64_t a, uint64_t b, uint32_t k, uint32_t l, uint64_t i) { (void)c; (void)a; (void)b; (void)k; (void)l; (void)i; return -ENOSYS; }
int sbrdma_write(sbrdma_ctx *c, uint64_t a, uint64_t b, uint32_t k, uint32_t l, uint64_t i) { (void)c; (void)a; (void)b; (void)k; (void)l; (void)i; return -ENOSYS; }
int sbrdma_poll(sbrdma_ctx *c, uint64_t *i, int *s, int m) { (void)c; (void)i; (void)s; (void)m; return -1; }
void sbrdma_close(sbrdma_ctx *c) { (void)c; }
#endif

// CSystem: the few Linux calls Swift's Glibc module does not export
// (epoll, eventfd, accept4, signalfd) plus a monotonic clock. Used only by
// the EventLoop binding module.
#pragma once
#include <stdint.h>
#include <stddef.h>

enum {
    CSYS_EV_IN = 0x001,
    CSYS_EV_OUT = 0x004,
    CSYS_EV_ERR = 0x008,
    CSYS_EV_HUP = 0x010,
    CSYS_EV_RDHUP = 0x2000,
    CSYS_EV_EXCLUSIVE = 1 << 28,
};

/// epoll_create1(EPOLL_CLOEXEC). Returns -1 and sets errno on failure.
int csys_epoll_create(void);
/// op: 1 add, 2 del, 3 mod (EPOLL_CTL_*). `token` is returned by wait.
int csys_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);
/// Waits and unpacks the (packed) epoll_event array into two plain arrays.
int csys_epoll_wait(int epfd, uint32_t *events, uint64_t *tokens, int max, int timeout_ms);
/// Like csys_epoll_wait with a nanosecond timeout (negative = forever), using
/// epoll_pwait2 where the kernel has it (5.11+), else rounding up to ms.
int csys_epoll_wait_ns(int epfd, uint32_t *events, uint64_t *tokens, int max, int64_t timeout_ns);
/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int csys_eventfd(void);
/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; addresses are not returned.
int csys_accept(int fd);
/// Blocks the given signals in the calling thread (threads created later
/// inherit the mask) and returns a non-blocking signalfd that reports them.
int csys_signalfd(const int *signals, int count);
/// Reads one signal number from a signalfd; -1 when none is pending.
int csys_signalfd_read(int fd);
/// CLOCK_MONOTONIC in nanoseconds.
uint64_t csys_monotonic_ns(void);
/// Sets TCP_NODELAY on a socket; returns setsockopt's result.
int csys_set_nodelay(int fd);
/// Sets SO_REUSEADDR (and SO_REUSEPORT when reuse_port is non-zero).
int csys_set_reuse(int fd, int reuse_port);
/// Binds and listens on an IPv4/IPv6 literal address; returns the fd or -1.
/// On success *bound_port receives the port actually bound (for port 0).
int csys_listen_tcp(const char *host, int port, int backlog, int *bound_port);
/// Binds and listens on a Unix domain socket path (unlinking a stale one).
int csys_listen_unix(const char *path, int backlog);
/// Non-blocking connect to a numeric host:port; returns fd (connect may be in progress) or -1.
int csys_connect_tcp(const char *host, int port);
/// A blocking TCP connection to numeric IPv4 host:port with TCP_NODELAY;
/// gives up after timeout_ms (errno ETIMEDOUT). Returns the fd or -1.
int csys_connect_tcp_blocking(const char *host, int port, int timeout_ms);
/// Resolves `host` to its first IPv4 address, written as dotted text into
/// `out` (at least 16 bytes). Blocking (getaddrinfo): call off event loops.
/// 0 on success, else the getaddrinfo error code.
int csys_resolve_ipv4(const char *host, char *out, size_t out_len);

/// memfd_create(name, MFD_CLOEXEC) sized to `bytes` with ftruncate (sparse:
/// pages are committed on first touch). Returns the fd or -1.
int csys_memfd(const char *name, uint64_t bytes);
/// Maps `bytes` of `fd` shared and read-write; returns NULL on failure.
void *csys_map_shared(int fd, uint64_t bytes);
/// munmap.
int csys_unmap(void *addr, uint64_t bytes);
/// Sends `len` bytes with one file descriptor attached (SCM_RIGHTS) on a
/// Unix stream socket. Returns bytes sent or -1.
long csys_send_with_fd(int sock, const void *data, size_t len, int fd);
/// Receives up to `len` bytes; a descriptor passed with them is stored in
/// *fd (else *fd = -1). Returns bytes received, 0 at EOF, or -1.
long csys_recv_with_fd(int sock, void *data, size_t len, int *fd);
/// Blocking connect to a Unix stream socket; returns the fd or -1.
int csys_connect_unix(const char *path);
/// Copies bytes (memcpy), for the binding modules that move page data.
void csys_copy(void *dst, const void *src, size_t len);

/// CRC-32C (Castagnoli) of `len` bytes, continuing from `crc` (start with 0):
/// the SSE4.2 instruction where the CPU has it (about 8 bytes a cycle),
/// a table otherwise. Same result either way (RFC 3720's CRC).
uint32_t csys_crc32c(uint32_t crc, const void *data, size_t len);
/// 1 when csys_crc32c uses the CPU instruction.
int csys_crc32c_hardware(void);
/// The table path alone (tests compare it with the instruction).
uint32_t csys_crc32c_software(uint32_t crc, const void *data, size_t len);

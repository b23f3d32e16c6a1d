/* SPDX-License-Identifier: MIT */
/* Addresses for the network layer: strict port parsing, host:port
 * resolution with a fast path for numeric input, and small sockaddr
 * helpers. Shared by streams, servers and UDP. */
#ifndef CORO_SRC_IO_ADDR_H_
#define CORO_SRC_IO_ADDR_H_

#include <netdb.h>
#include <sys/socket.h>

/* Parse a port string.
 * - A decimal number 0..65535 (digits only, at most 5 of them, no sign, no
 *   space): returns 0 and stores it in *num.
 * - A service name (ASCII letters, digits and '-', starting with a letter,
 *   at most 63 characters, e.g. "http"): returns 1 and leaves *num alone;
 *   the caller resolves it through getaddrinfo.
 * - Anything else ("99999", "-1", "", "12a", " 80", NULL): -EINVAL.
 * getaddrinfo itself would wrap "99999" to 34463; this check runs first so
 * that never happens. num may be NULL. */
int coro__port_parse(const char *port, int *num);

/* Resolve host:port into a list of addresses for sockets of socktype
 * (SOCK_STREAM or SOCK_DGRAM; anything else is -EINVAL).
 * - The port is checked with coro__port_parse first (-EINVAL).
 * - host NULL or "": with passive set, the wildcard addresses 0.0.0.0 then
 *   :: (what getaddrinfo gives with AI_PASSIVE); without, the loopback
 *   addresses ::1 then 127.0.0.1.
 * - Fast path: when host is NULL, "", or a literal IPv4 (dotted quad) or
 *   IPv6 address (without a %scope), and the port is numeric, the list is
 *   built here in one allocation: no thread pool, no suspension, callable
 *   outside a task.
 * - Otherwise coro_getaddrinfo resolves it (the calling task suspends; it
 *   must be a task: -EPERM otherwise), with AI_PASSIVE when passive and
 *   AI_NUMERICSERV when the port is numeric. Its errors pass through:
 *   UV_EAI_*, -ECANCELED, -ENOMEM.
 * On success *res is a non-empty list, with ai_family AF_INET or AF_INET6
 * only (others are dropped; none left: UV_EAI_ADDRFAMILY), owned by the
 * caller and freed with coro__resolve_free. On failure *res is NULL. */
int coro__resolve(struct addrinfo **res, const char *host, const char *port,
                  int socktype, int passive);
/* Free a list from coro__resolve, whichever path made it. NULL is
 * ignored. (Same as coro_freeaddrinfo, which frees both kinds too.) */
void coro__resolve_free(struct addrinfo *res);

/* The length of a socket address by its family: sizeof(struct sockaddr_in)
 * for AF_INET, sizeof(struct sockaddr_in6) for AF_INET6, sizeof(struct
 * sockaddr_un) for AF_UNIX; 0 for anything else or NULL. */
int coro__sockaddr_len(const struct sockaddr *addr);
/* 1 when addr is a non-NULL AF_INET or AF_INET6 address, else 0. */
int coro__sockaddr_is_ip(const struct sockaddr *addr);
/* The port of an AF_INET / AF_INET6 address in host order, -EINVAL for
 * other families or NULL. */
int coro__sockaddr_port(const struct sockaddr *addr);
/* Copy src (of length srclen) into *dst for a public "addr, *len" pair:
 * *len is in: the room in dst (at most sizeof(*dst)), out: srclen. Copies
 * min(room, srclen) bytes; -EINVAL if dst, len or src is NULL or *len is
 * negative. */
int coro__sockaddr_out(struct sockaddr_storage *dst, int *len,
                       const struct sockaddr *src, int srclen);

/* Bit set in ai_flags of the entries the fast path builds (getaddrinfo
 * refuses unknown flags, so its own results never carry it). */
#define CORO__AI_OWN 0x40000000

#endif /* CORO_SRC_IO_ADDR_H_ */

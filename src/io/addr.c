/* SPDX-License-Identifier: MIT */
/* Port parsing, host:port resolution with a numeric fast path, sockaddr
 * helpers. */
#include "io/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>
#include <uv.h>

#include "coro-internal.h"

int coro__port_parse(const char *port, int *num) {
  if (port == NULL || port[0] == '\0') return -EINVAL;
  if (port[0] >= '0' && port[0] <= '9') {
    long v = 0;
    size_t i;
    for (i = 0; port[i] != '\0'; i++) {
      if (port[i] < '0' || port[i] > '9' || i >= 5) return -EINVAL;
      v = v * 10 + (port[i] - '0');
    }
    if (v > 65535) return -EINVAL;
    if (num != NULL) *num = (int)v;
    return 0;
  }
  if (!((port[0] >= 'a' && port[0] <= 'z') ||
        (port[0] >= 'A' && port[0] <= 'Z')))
    return -EINVAL;
  size_t i;
  for (i = 0; port[i] != '\0'; i++) {
    char c = port[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '-';
    if (!ok || i >= 63) return -EINVAL;
  }
  return 1;
}

/* The fast path's list: up to two entries and their addresses, in one
 * block whose start is the first entry. */
typedef union own_sa {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} own_sa;
typedef struct own_list {
  struct addrinfo ai[2];
  own_sa sa[2];
} own_list;

static void own_entry(own_list *l, int i, int family, const void *addr,
                      int port, int socktype, int passive) {
  struct addrinfo *ai = &l->ai[i];
  own_sa *sa = &l->sa[i];
  memset(ai, 0, sizeof(*ai));
  memset(sa, 0, sizeof(*sa));
  ai->ai_flags = CORO__AI_OWN | (passive ? AI_PASSIVE : 0);
  ai->ai_family = family;
  ai->ai_socktype = socktype;
  ai->ai_protocol = socktype == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  ai->ai_addr = &sa->sa;
  if (family == AF_INET) {
    sa->in4.sin_family = AF_INET;
    sa->in4.sin_port = htons((uint16_t)port);
    memcpy(&sa->in4.sin_addr, addr, sizeof(sa->in4.sin_addr));
    ai->ai_addrlen = sizeof(struct sockaddr_in);
  } else {
    sa->in6.sin6_family = AF_INET6;
    sa->in6.sin6_port = htons((uint16_t)port);
    memcpy(&sa->in6.sin6_addr, addr, sizeof(sa->in6.sin6_addr));
    ai->ai_addrlen = sizeof(struct sockaddr_in6);
  }
  if (i > 0) l->ai[i - 1].ai_next = ai;
}

/* 1 and the list when host:port takes the fast path, 0 when it does not,
 * -ENOMEM. */
static int resolve_fast(struct addrinfo **res, const char *host, int port,
                        int socktype, int passive) {
  struct in_addr a4;
  struct in6_addr a6;
  int n;
  int fam[2];
  const void *addr[2];
  struct in_addr any4, lo4;
  if (host == NULL || host[0] == '\0') {
    any4.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
    lo4 = any4;
    if (passive) {
      fam[0] = AF_INET, addr[0] = &any4;
      fam[1] = AF_INET6, addr[1] = &in6addr_any;
    } else {
      fam[0] = AF_INET6, addr[0] = &in6addr_loopback;
      fam[1] = AF_INET, addr[1] = &lo4;
    }
    n = 2;
  } else if (inet_pton(AF_INET, host, &a4) == 1) {
    fam[0] = AF_INET, addr[0] = &a4, n = 1;
  } else if (inet_pton(AF_INET6, host, &a6) == 1) {
    fam[0] = AF_INET6, addr[0] = &a6, n = 1;
  } else {
    return 0;
  }
  own_list *l = coro__malloc(sizeof(*l));
  if (l == NULL) return -ENOMEM;
  for (int i = 0; i < n; i++)
    own_entry(l, i, fam[i], addr[i], port, socktype, passive);
  *res = &l->ai[0];
  return 1;
}

int coro__resolve(struct addrinfo **res, const char *host, const char *port,
                  int socktype, int passive) {
  if (res == NULL) return -EINVAL;
  *res = NULL;
  if (socktype != SOCK_STREAM && socktype != SOCK_DGRAM) return -EINVAL;
  int num = 0;
  int kind = coro__port_parse(port, &num);
  if (kind < 0) return kind;
  if (kind == 0) {
    int r = resolve_fast(res, host, num, socktype, passive);
    if (r != 0) return r < 0 ? r : 0;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = (passive ? AI_PASSIVE : 0) | (kind == 0 ? AI_NUMERICSERV : 0);
  /* getaddrinfo refuses "" as a host; with a service name it means the
   * same as NULL here. */
  const char *h = (host != NULL && host[0] == '\0') ? NULL : host;
  struct addrinfo *list = NULL;
  int r = coro_getaddrinfo(&list, h, port, &hints);
  if (r != 0) return r;
  /* Keep AF_INET / AF_INET6 entries only. */
  struct addrinfo **pp = &list;
  while (*pp != NULL) {
    struct addrinfo *ai = *pp;
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
      pp = &ai->ai_next;
    } else {
      *pp = ai->ai_next;
      ai->ai_next = NULL;
      freeaddrinfo(ai);
    }
  }
  if (list == NULL) return UV_EAI_ADDRFAMILY;
  *res = list;
  return 0;
}

void coro__resolve_free(struct addrinfo *res) { coro_freeaddrinfo(res); }

int coro__sockaddr_len(const struct sockaddr *addr) {
  if (addr == NULL) return 0;
  switch (addr->sa_family) {
  case AF_INET: return (int)sizeof(struct sockaddr_in);
  case AF_INET6: return (int)sizeof(struct sockaddr_in6);
  case AF_UNIX: return (int)sizeof(struct sockaddr_un);
  default: return 0;
  }
}

int coro__sockaddr_is_ip(const struct sockaddr *addr) {
  return addr != NULL &&
         (addr->sa_family == AF_INET || addr->sa_family == AF_INET6);
}

int coro__sockaddr_port(const struct sockaddr *addr) {
  if (addr == NULL) return -EINVAL;
  if (addr->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)(const void *)addr)->sin_port);
  if (addr->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)(const void *)addr)->sin6_port);
  return -EINVAL;
}

int coro__sockaddr_out(struct sockaddr_storage *dst, int *len,
                       const struct sockaddr *src, int srclen) {
  if (dst == NULL || len == NULL || src == NULL || *len < 0 || srclen < 0)
    return -EINVAL;
  size_t room = (size_t)*len;
  if (room > sizeof(*dst)) room = sizeof(*dst);
  size_t n = (size_t)srclen < room ? (size_t)srclen : room;
  memcpy(dst, src, n);
  *len = srclen;
  return 0;
}

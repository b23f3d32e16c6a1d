/* SPDX-License-Identifier: MIT */
/* What this machine's kernel charges for the two things network servers
 * pay most for besides the network itself: a trivial system call (1M
 * getppid() through syscall(2), which nothing caches) and a first touch of
 * an anonymous page (64 MiB mapped, one write per 4 KiB page). Best of 3.
 *
 * Usage: net_probe
 * Prints:
 *   net_probe: X ns/syscall what=getppid calls=1000000
 *   net_probe: Y ns/fault what=anon-first-touch pages=16384 */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "netbench.h"

int main(void) {
  const long calls = 1000000;
  const size_t bytes = 64u << 20, page = (size_t)sysconf(_SC_PAGESIZE);
  double best_sys = 1e9, best_fault = 1e9;
  for (int round = 0; round < 3; round++) {
    double t = nb_now();
    for (long i = 0; i < calls; i++) syscall(SYS_getppid);
    t = (nb_now() - t) * 1e9 / (double)calls;
    if (t < best_sys) best_sys = t;

    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("net_probe: mmap"); return 1; }
    /* No transparent huge pages: each 4 KiB page faults on its own. */
    madvise(p, bytes, MADV_NOHUGEPAGE);
    t = nb_now();
    for (size_t off = 0; off < bytes; off += page) p[off] = 1;
    t = (nb_now() - t) * 1e9 / (double)(bytes / page);
    if (t < best_fault) best_fault = t;
    munmap(p, bytes);
  }
  printf("net_probe: %.1f ns/syscall what=getppid calls=%ld\n", best_sys, calls);
  printf("net_probe: %.1f ns/fault what=anon-first-touch pages=%zu\n",
         best_fault, bytes / page);
  return 0;
}

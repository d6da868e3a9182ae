/* A hostile program for the FUSE overlay race test (tests/overlay_race.rs, issue 12 item 6).
 *
 *   race ROOT WORKDIR HOSTDIR SECONDS VARIANT [THREADS [HOLD]]
 *
 * ROOT: a directory to chroot into first (the overlay's mount point, so that the symlink below
 * cannot reach HOSTDIR through the client's own path walk), or "-" inside a container.
 * WORKDIR (e.g. /race) gets d/f (1 byte "c", xattr user.c), d/l -> container-link.
 * One thread loops  rename W/d W/d2; symlink HOSTDIR W/d; unlink W/d; rename W/d2 W/d  while
 * THREADS (4) workers loop the VARIANT's operations on names under W/d:
 *   write: open(f, O_WRONLY|O_TRUNC), chmod f, truncate f, setxattr f, link f
 *   names: rename f g and back, creat+unlink u, mkdir+rmdir m, mknod fifo+unlink p, symlink+unlink s
 *   reads: stat f, readlink l, listxattr f, readdir d, open+read f
 *   all:   every operation above
 * HOLD (default 0): sched_yield() calls the swapper makes between cycles.
 * A server that resolves a cached path through W/d while it is the symlink acts on HOSTDIR: the
 * test then sees the host canary changed (from the host), and this program reports every result
 * that can only come from the host's canary (a LEAK line: the host's f is HOST_SIZE bytes, its l
 * points to host-link-target, it has xattr user.hostcanary, HOSTDIR holds host-only).
 * Exit status: 0 no leak seen, 3 leaks seen, 2 setup failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define HOST_SIZE 4099
#define MAX_THREADS 16

static atomic_int stop;
static atomic_long swaps, ops_ok, ops_err, leaks;
static char W[512], D[600], D2[600], F[600], G[600], L[600], U[600], M[600], P[600], S[600], LNK[600];
static const char *host;
static int hold;

static void leak(const char *op, const char *detail) {
  long n = atomic_fetch_add(&leaks, 1);
  if (n < 20)
    printf("LEAK %s: %s\n", op, detail);
}

static void count(int r) {
  if (r == 0)
    atomic_fetch_add(&ops_ok, 1);
  else
    atomic_fetch_add(&ops_err, 1);
}

static int check_stat(const char *op, const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return -1;
  if (S_ISREG(st.st_mode) && st.st_size == HOST_SIZE) {
    char b[700];
    snprintf(b, sizeof b, "%s has the host canary's size %d", path, HOST_SIZE);
    leak(op, b);
  }
  return 0;
}

/* ---- the operations; each returns 0 on success ---- */
static int op_open_trunc(void) {
  int fd = open(F, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (write(fd, "c", 1) != 1) {
    close(fd);
    return -1;
  }
  return close(fd);
}
static int op_chmod(void) { return chmod(F, 0600); }
static int op_truncate(void) { return truncate(F, 0); }
static int op_setxattr(void) { return setxattr(F, "user.race", "container", 9, 0); }
static int op_link(void) {
  if (link(F, LNK) != 0)
    return -1;
  check_stat("link", LNK);
  return unlink(LNK);
}
static int op_rename(void) {
  int r = rename(F, G);
  rename(G, F);
  return r;
}
static int op_unlink(void) {
  int fd = open(U, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0)
    close(fd);
  return unlink(U);
}
static int op_mkdir(void) {
  int r = mkdir(M, 0755);
  rmdir(M);
  return r;
}
static int op_mknod(void) {
  int r = mknod(P, S_IFIFO | 0644, 0);
  unlink(P);
  return r;
}
static int op_symlink(void) {
  int r = symlink("container-s", S);
  unlink(S);
  return r;
}
/* AT_STATX_FORCE_SYNC makes the client send GETATTR even with attributes cached (the overlay
   lets the kernel cache them for a day, so a plain stat would never reach the server). */
static int op_stat(void) {
  struct statx sx;
  if (statx(AT_FDCWD, F, AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &sx) != 0)
    return -1;
  if (S_ISREG(sx.stx_mode) && sx.stx_size == HOST_SIZE)
    leak("getattr", "d/f has the host canary's size");
  return 0;
}
static int op_readlink(void) {
  char b[256];
  ssize_t n = readlink(L, b, sizeof b - 1);
  if (n < 0)
    return -1;
  b[n] = 0;
  if (strcmp(b, "host-link-target") == 0)
    leak("readlink", "d/l reads the host canary's link target");
  return 0;
}
static int op_listxattr(void) {
  char b[4096];
  ssize_t n = llistxattr(F, b, sizeof b);
  if (n < 0)
    return -1;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(b + i) + 1)
    if (strcmp(b + i, "user.hostcanary") == 0)
      leak("listxattr", "d/f lists the host canary's xattr user.hostcanary");
  return 0;
}
static int op_readdir(void) {
  DIR *d = opendir(D);
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, "host-only") == 0)
      leak("opendir", "d lists the host canary directory's entry host-only");
  closedir(d);
  return 0;
}
static int op_read(void) {
  char b[8192];
  int fd = open(F, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, b, sizeof b);
  close(fd);
  if (n == HOST_SIZE)
    leak("read", "d/f read gave the host canary's content");
  return n < 0 ? -1 : 0;
}

typedef int (*op_fn)(void);
static op_fn write_ops[] = {op_open_trunc, op_chmod, op_truncate, op_setxattr, op_link};
static op_fn name_ops[] = {op_rename, op_unlink, op_mkdir, op_mknod, op_symlink};
static op_fn read_ops[] = {op_stat, op_readlink, op_listxattr, op_readdir, op_read};
static op_fn all_ops[15];
static op_fn *ops;
static int nops;

static void *worker(void *arg) {
  long t = (long)arg;
  for (long k = t; !atomic_load(&stop); k++) {
    int r = ops[k % nops]();
    count(r);
    /* A failure is usually the client's own path walk meeting the symlink or no d at all: it
       costs no request, and spinning on it would starve the swapper and the server of CPU. */
    if (r != 0)
      sched_yield();
  }
  return NULL;
}

static void *swapper(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    rename(D, D2);
    symlink(host, D);
    unlink(D);
    rename(D2, D);
    atomic_fetch_add(&swaps, 1);
    /* Keep d a real directory most of the time, so that the workers' requests reach the server
       (while d is missing or the symlink, their path walks fail in the client's kernel). */
    for (int i = 0; i < hold && !atomic_load(&stop); i++)
      sched_yield();
  }
  return NULL;
}

static int setup(void) {
  if (mkdir(W, 0755) != 0 && errno != EEXIST)
    return perror(W), -1;
  if (mkdir(D, 0755) != 0 && errno != EEXIST)
    return perror(D), -1;
  int fd = open(F, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, "c", 1) != 1 || close(fd) != 0)
    return perror(F), -1;
  if (setxattr(F, "user.c", "c", 1, 0) != 0)
    return perror("setxattr user.c"), -1;
  if (symlink("container-link", L) != 0 && errno != EEXIST)
    return perror(L), -1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: race ROOT WORKDIR HOSTDIR SECONDS write|names|reads|all [THREADS [HOLD]]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argv[1], "-") != 0 && (chdir(argv[1]) != 0 || chroot(".") != 0 || chdir("/") != 0))
    return perror(argv[1]), 2;
  snprintf(W, sizeof W, "%s", argv[2]);
#define P_(v, s) snprintf(v, sizeof v, "%s/%s", W, s)
  P_(D, "d"); P_(D2, "d2"); P_(F, "d/f"); P_(G, "d/g"); P_(L, "d/l"); P_(U, "d/u");
  P_(M, "d/m"); P_(P, "d/p"); P_(S, "d/s"); P_(LNK, "lnk");
  host = argv[3];
  int secs = atoi(argv[4]);
  hold = argc > 7 ? atoi(argv[7]) : 0;
  const char *v = argv[5];
  int threads = argc > 6 ? atoi(argv[6]) : 4;
  if (threads < 1 || threads > MAX_THREADS)
    threads = 4;
  memcpy(all_ops, write_ops, sizeof write_ops);
  memcpy(all_ops + 5, name_ops, sizeof name_ops);
  memcpy(all_ops + 10, read_ops, sizeof read_ops);
  if (strcmp(v, "write") == 0) ops = write_ops, nops = 5;
  else if (strcmp(v, "names") == 0) ops = name_ops, nops = 5;
  else if (strcmp(v, "reads") == 0) ops = read_ops, nops = 5;
  else if (strcmp(v, "all") == 0) ops = all_ops, nops = 15;
  else return fprintf(stderr, "race: unknown variant %s\n", v), 2;
  if (setup() != 0)
    return 2;
  pthread_t sw, th[MAX_THREADS];
  if (pthread_create(&sw, NULL, swapper, NULL) != 0)
    return perror("pthread_create"), 2;
  for (long i = 0; i < threads; i++)
    if (pthread_create(&th[i], NULL, worker, (void *)i) != 0)
      return perror("pthread_create"), 2;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  /* Stop early once a leak is seen: the host may already be damaged, the test has its answer. */
  do {
    usleep(50000);
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while (now.tv_sec - start.tv_sec < secs && atomic_load(&leaks) == 0);
  atomic_store(&stop, 1);
  pthread_join(sw, NULL);
  for (int i = 0; i < threads; i++)
    pthread_join(th[i], NULL);
  double el = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
  printf("race %s: %.1f s, %ld swaps, %ld ops ok, %ld ops failed, %ld leaks\n", v, el, atomic_load(&swaps),
         atomic_load(&ops_ok), atomic_load(&ops_err), atomic_load(&leaks));
  return atomic_load(&leaks) ? 3 : 0;
}

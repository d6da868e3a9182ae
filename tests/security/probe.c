/* The escape suite's probe: one static binary, one attempt per invocation. It prints
 *   ACTION ok [detail]      the attempt succeeded (exit 0)
 *   ACTION err ERRNO        it failed, with the errno number (exit 1)
 * so a test can tell "denied by seccomp" (EPERM) from "the kernel said no" (EACCES, ESRCH, ...).
 * Compiled by the tests with `gcc -static` (tests/security/probe.rs); never committed as a binary. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *action;

static int ok(const char *detail) {
  printf("%s ok %s\n", action, detail ? detail : "");
  return 0;
}

static int fail(int e) {
  printf("%s err %d\n", action, e);
  return 1;
}

static int check(long rc) { return rc < 0 ? fail(errno) : ok(NULL); }

static int read_file(const char *path) {
  char buf[256];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail(errno);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n < 0) return fail(errno);
  buf[n] = 0;
  buf[strcspn(buf, "\n")] = 0;
  return ok(buf);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  action = argv[1];
  const char *a = argc > 2 ? argv[2] : "";
  const char *b = argc > 3 ? argv[3] : "";
  setvbuf(stdout, NULL, _IONBF, 0);

  if (!strcmp(action, "read")) return read_file(a);
  if (!strcmp(action, "read-at")) { /* read file b relative to inherited descriptor a */
    int fd = openat(atoi(a), b, O_RDONLY);
    if (fd < 0) return fail(errno);
    char buf[128] = {0};
    if (read(fd, buf, sizeof buf - 1) < 0) return fail(errno);
    buf[strcspn(buf, "\n")] = 0;
    return ok(buf);
  }
  if (!strcmp(action, "write")) {
    int fd = open(a, O_WRONLY | O_TRUNC);
    if (fd < 0) return fail(errno);
    return check(write(fd, b, strlen(b)));
  }
  if (!strcmp(action, "parent-walk")) { /* ../../.. from / then the host path a */
    char path[4096];
    snprintf(path, sizeof path, "/../../../../../../..%s", a);
    return read_file(path);
  }
  if (!strcmp(action, "kill")) return check(kill(atoi(a), 0));
  if (!strcmp(action, "ptrace")) {
    pid_t pid = atoi(a);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) return fail(errno);
    ptrace(PTRACE_DETACH, pid, 0, 0);
    return ok(NULL);
  }
  if (!strcmp(action, "vm-read")) { /* process_vm_readv of one byte at address b of pid a */
    char c;
    struct iovec local = {&c, 1}, remote = {(void *)strtoull(b, NULL, 0), 1};
    return check(process_vm_readv(atoi(a), &local, 1, &remote, 1, 0));
  }
  if (!strcmp(action, "handle")) { /* name_to_handle_at + open_by_handle_at of path a */
    struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, a, fh, &mount_id, 0) < 0) return fail(errno);
    int mfd = open("/", O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mfd, fh, O_RDONLY);
    return fd < 0 ? fail(errno) : ok(NULL);
  }
  if (!strcmp(action, "remount-rw")) return check(mount(NULL, a, NULL, MS_REMOUNT | MS_BIND, NULL));
  if (!strcmp(action, "mknod-blk")) return check(mknod(a, S_IFBLK | 0600, makedev(atoi(b), 0)));
  if (!strcmp(action, "setuid-status")) { /* euid and effective caps after exec of a setuid binary */
    char line[256], caps[64] = "";
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, "CapEff:", 7)) sscanf(line + 7, "%63s", caps);
    char detail[128];
    snprintf(detail, sizeof detail, "euid=%d capeff=%s", geteuid(), caps);
    return geteuid() == 0 ? ok(detail) : (printf("%s err 1 %s\n", action, detail), 1);
  }
  if (!strcmp(action, "key-search")) { /* the session keyring holds a user key named a */
    long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", a, 0);
    return check(id);
  }
  if (!strcmp(action, "key-read")) { /* read the key with serial a */
    char buf[128] = {0};
    long n = syscall(SYS_keyctl, KEYCTL_READ, atol(a), buf, sizeof buf - 1);
    return n < 0 ? fail(errno) : ok(buf);
  }
  if (!strcmp(action, "key-add")) { /* keyrings work: add a key to the session keyring and read it back */
    long id = syscall(SYS_add_key, "user", "burrow-probe", "v", 1, KEY_SPEC_SESSION_KEYRING);
    if (id < 0) return fail(errno);
    char buf[8] = {0};
    return check(syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf));
  }
  if (!strcmp(action, "abstract")) { /* connect to the abstract unix socket @a */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(a);
    memcpy(sa.sun_path + 1, a, len);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    return check(connect(s, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + 1 + len));
  }
  if (!strcmp(action, "fd")) { /* read from inherited descriptor a */
    char buf[128] = {0};
    ssize_t n = pread(atoi(a), buf, sizeof buf - 1, 0);
    if (n < 0) return fail(errno);
    buf[strcspn(buf, "\n")] = 0;
    return ok(buf);
  }
  if (!strcmp(action, "tiocsti")) { /* push a into the input queue of the terminal on fd 0 */
    if (!strcmp(b, "steal")) ioctl(0, TIOCSCTTY, 0); /* take it as controlling terminal if nobody has it */
    for (const char *p = a; *p; p++)
      if (ioctl(0, TIOCSTI, p) < 0) return fail(errno);
    return ok(NULL);
  }
  if (!strcmp(action, "tiocsti-high")) { /* the same request with the upper 32 bits set (CVE-2019-10063) */
    if (!strcmp(b, "steal")) ioctl(0, TIOCSCTTY, 0);
    for (const char *p = a; *p; p++)
      if (syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | 0x100000000ul, p) < 0) return fail(errno);
    return ok(NULL);
  }
  if (!strcmp(action, "tioclinux")) {
    char sub = 2; /* TIOCL_SETSEL needs more, but the subcode is enough to reach the driver */
    return check(ioctl(0, TIOCLINUX, &sub));
  }
  if (!strcmp(action, "ctty")) return check(open("/dev/tty", O_RDWR));
  if (!strcmp(action, "userns")) return check(unshare(CLONE_NEWUSER));
  if (!strcmp(action, "clone-userns")) { /* clone(2) with CLONE_NEWUSER */
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid < 0) return fail(errno);
    waitpid(pid, NULL, 0);
    return ok(NULL);
  }
  if (!strcmp(action, "clone3")) { /* a zero-size clone3: EINVAL from the kernel, ENOSYS from the filter */
    return check(syscall(SYS_clone3, NULL, 0));
  }
  if (!strcmp(action, "personality")) return check(personality(strtoul(a, NULL, 0)));
  if (!strcmp(action, "syscall")) { /* raw syscall number a with zero arguments, then keep running */
    long rc = syscall(atol(a), 0, 0, 0, 0, 0, 0);
    int e = errno;
    printf("still running\n");
    return rc < 0 ? fail(e) : ok(NULL);
  }
  if (!strcmp(action, "spin")) { /* cost of syscall number a with bad arguments, over b calls: ns per call */
    long nr = atol(a), n = atol(b);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) syscall(nr, -1, 0, 0, 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char d[64];
    snprintf(d, sizeof d, "%.1f", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
    return ok(d);
  }
  if (!strcmp(action, "mkdir")) return check(mkdir(a, 0755));
  if (!strcmp(action, "status")) { /* one field of /proc/self/status */
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    size_t n = strlen(a);
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, a, n) && line[n] == ':') {
        char *v = line + n + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        return ok(v);
      }
    return fail(ENOENT);
  }
  if (!strcmp(action, "session")) { /* own session id versus the parent's */
    char d[64];
    snprintf(d, sizeof d, "sid=%d pid=%d", getsid(0), getpid());
    return ok(d);
  }
  fprintf(stderr, "probe: unknown action %s\n", action);
  return 2;
}

/* Named buffers between two processes through libpoolshim_buffers (include/poolshim/buffers.h),
 * in C (the header is C): create, a fork child opens and checks the bytes and the metadata and
 * writes back, list, unlink, close; every bad input gets its code and a reason in words; and, with
 * `bench BYTES`, the time from a second process's open to its first byte read.
 * usage: buffer_pair check | bench BYTES | roundtrip N | hold NAME   (POOLSHIM_SOCKET names the daemon)
 * Prints "buffer_pair: FAIL: ..." and exits 1 when a check fails. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "poolshim/buffers.h"

static int failures = 0;
#define CHECK(cond, ...)                          \
  do {                                            \
    if (!(cond)) {                                \
      printf("buffer_pair: FAIL: " __VA_ARGS__);  \
      printf(" (%s)\n", poolshim_buffer_error()); \
      ++failures;                                 \
    }                                             \
  } while (0)

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int child_checks(void) {
  poolshim_buffer* b = NULL;
  if (poolshim_buffer_open("pair.test", 0, &b) != 0) {
    printf("buffer_pair: FAIL: the child cannot open pair.test (%s)\n", poolshim_buffer_error());
    return 1;
  }
  struct poolshim_buffer_info i;
  poolshim_buffer_get_info(b, &i);
  float* f = (float*)poolshim_buffer_data(b);
  int bad = strcmp(i.dtype, "f32") != 0 || i.ndim != 2 || i.shape[0] != 256 || i.shape[1] != 1024 ||
            i.bytes != 256 * 1024 * 4 || i.creator != (int64_t)getppid();
  for (int k = 0; k < 256 * 1024 && !bad; ++k) bad = f[k] != (float)k;
  for (int k = 0; k < 256 * 1024; ++k) f[k] = -(float)k; /* the parent reads this back */
  poolshim_buffer_close(b);
  return bad;
}

static void check(void) {
  poolshim_buffer* b = NULL;
  const uint64_t shape[2] = {256, 1024};
  CHECK(poolshim_buffer_create("pair.test", "f32", 2, shape, POOLSHIM_BUFFER_HOST, -1, 0, &b) == 0, "create");
  if (b == NULL) return;
  float* f = (float*)poolshim_buffer_data(b);
  for (int k = 0; k < 256 * 1024; ++k) f[k] = (float)k;
  fflush(stdout);
  const pid_t child = fork();
  if (child == 0) _exit(child_checks());
  int st = 0;
  waitpid(child, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child saw other bytes or metadata");
  int back = 1;
  for (int k = 0; k < 256 * 1024 && back; ++k) back = f[k] == -(float)k;
  CHECK(back, "the parent does not see what the child wrote");

  struct poolshim_buffer_entry e[4];
  size_t n = 0;
  CHECK(poolshim_buffer_list(e, 4, &n) == 0 && n == 1 && strcmp(e[0].name, "pair.test") == 0 && e[0].references == 1,
        "list: %zu buffer(s), first '%s' with %u reference(s)", n, n ? e[0].name : "", n ? e[0].references : 0);

  /* Bad input: the code and a reason. */
  poolshim_buffer* x = NULL;
  int r = poolshim_buffer_create("a/b", "u8", 1, shape, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_EINVAL && strstr(poolshim_buffer_error(), "'/'"), "a name with '/' gave %d", r);
  printf("  a name with '/': %s\n", poolshim_buffer_error());
  char long_name[80];
  memset(long_name, 'n', 70);
  long_name[70] = 0;
  r = poolshim_buffer_create(long_name, "u8", 1, shape, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_EINVAL, "a 70-byte name gave %d", r);
  printf("  a 70-byte name: %s\n", poolshim_buffer_error());
  r = poolshim_buffer_create("t", "f31", 1, shape, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_EINVAL, "an unknown dtype gave %d", r);
  printf("  an unknown dtype: %s\n", poolshim_buffer_error());
  const uint64_t huge[2] = {UINT64_MAX / 2, 3};
  r = poolshim_buffer_create("t", "f32", 2, huge, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_EINVAL, "an overflowing shape gave %d", r);
  printf("  an overflowing shape: %s\n", poolshim_buffer_error());
  r = poolshim_buffer_create("pair.test", "u8", 1, shape, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_EEXIST, "a taken name gave %d", r);
  printf("  a taken name: %s\n", poolshim_buffer_error());
  r = poolshim_buffer_open("no.such", 0, &x);
  CHECK(r == POOLSHIM_ENOENT, "a missing name gave %d", r);
  printf("  a missing name: %s\n", poolshim_buffer_error());
  r = poolshim_buffer_create("dev", "u8", 1, shape, POOLSHIM_BUFFER_DEVICE, -1, 0, &x);
  CHECK(r == POOLSHIM_EINVAL, "a device buffer without a device gave %d", r);
  printf("  a device buffer without a device: %s\n", poolshim_buffer_error());
  const uint64_t big[1] = {(uint64_t)1 << 39};
  r = poolshim_buffer_create("big", "u8", 1, big, POOLSHIM_BUFFER_HOST, -1, 0, &x);
  CHECK(r == POOLSHIM_ENOMEM, "512 GiB gave %d", r);
  printf("  512 GiB: %s\n", poolshim_buffer_error());

  CHECK(poolshim_buffer_unlink("pair.test", 0) == 0, "unlink");
  CHECK(poolshim_buffer_open("pair.test", 0, &x) == POOLSHIM_ENOENT, "open after unlink");
  CHECK(f[7] == -7.0f, "the mapping after unlink");
  CHECK(poolshim_buffer_close(b) == 0, "close");
  n = 9;
  CHECK(poolshim_buffer_list(e, 4, &n) == 0 && n == 0, "list after close: %zu", n);
}

/* Open-to-first-byte in a second process, against making the buffer here. */
static void bench(uint64_t bytes) {
  poolshim_buffer* b = NULL;
  const double t0 = now_ms();
  if (poolshim_buffer_create("bench", "u8", 1, &bytes, POOLSHIM_BUFFER_HOST, -1, 0, &b) != 0) {
    printf("buffer_pair: FAIL: create %llu bytes (%s)\n", (unsigned long long)bytes, poolshim_buffer_error());
    ++failures;
    return;
  }
  const double created = now_ms() - t0;
  ((volatile unsigned char*)poolshim_buffer_data(b))[bytes - 1] = 0x5a;
  int p[2];
  if (pipe(p) != 0) return;
  fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    poolshim_buffer* o = NULL;
    const double t1 = now_ms();
    double ms = -1;
    if (poolshim_buffer_open("bench", 0, &o) == 0 &&
        ((volatile unsigned char*)poolshim_buffer_data(o))[bytes - 1] == 0x5a)
      ms = now_ms() - t1;
    if (write(p[1], &ms, sizeof ms) != sizeof ms) _exit(1);
    _exit(0);
  }
  double ms = -1;
  if (read(p[0], &ms, sizeof ms) != sizeof ms) ms = -1;
  waitpid(child, NULL, 0);
  CHECK(ms >= 0, "the second process could not open the buffer and read its last byte");
  printf(
      "named buffer of %llu MiB: create (daemon fills it) %.1f ms; open in a second process to its last byte %.2f ms\n",
      (unsigned long long)(bytes >> 20), created, ms);
  poolshim_buffer_unlink("bench", 0);
  poolshim_buffer_close(b);
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* N rounds of create, open (a second reference), close both and unlink a 4 KiB buffer through the
 * socket: each round's time, p50 and p99. */
/* Each call's time over n rounds of create, open (the name's get), unlink, close, close (the
 * deletes) of a 4 KiB host buffer: p50 and p99 per call, and of the whole round. */
static void roundtrip(int n) {
  static const char* names[6] = {"create", "open", "unlink", "close", "close (last)", "round"};
  double* t[6];
  for (int k = 0; k < 6; ++k) {
    t[k] = calloc((size_t)n, sizeof(double));
    if (t[k] == NULL) return;
  }
  const uint64_t bytes = 4096;
  for (int i = 0; i < n; ++i) {
    poolshim_buffer *c = NULL, *o = NULL;
    double at[6];
    at[0] = now_ms();
    int r = poolshim_buffer_create("rt", "u8", 1, &bytes, POOLSHIM_BUFFER_HOST, -1, 0, &c);
    at[1] = now_ms();
    if (r == 0) r = poolshim_buffer_open("rt", 0, &o);
    at[2] = now_ms();
    if (r == 0) r = poolshim_buffer_unlink("rt", 0);
    at[3] = now_ms();
    if (o != NULL) poolshim_buffer_close(o);
    at[4] = now_ms();
    if (c != NULL) poolshim_buffer_close(c);
    at[5] = now_ms();
    for (int k = 0; k < 5; ++k) t[k][i] = at[k + 1] - at[k];
    t[5][i] = at[5] - at[0];
    if (r != 0) {
      printf("buffer_pair: FAIL: round %d: %s\n", i, poolshim_buffer_error());
      ++failures;
      n = i;
      break;
    }
  }
  for (int k = 0; k < 6 && n > 0; ++k) {
    qsort(t[k], (size_t)n, sizeof(double), by_value);
    printf("4 KiB host buffer through the socket, %d rounds: %-12s p50 %.3f ms, p99 %.3f ms\n", n, names[k],
           t[k][n / 2], t[k][(n * 99) / 100]);
  }
  for (int k = 0; k < 6; ++k) free(t[k]);
}

/* Creates NAME (u8[4096]) and holds it until stdin closes (tests that need a named buffer). */
static void hold(const char* name) {
  poolshim_buffer* b = NULL;
  const uint64_t n = 4096;
  if (poolshim_buffer_create(name, "u8", 1, &n, POOLSHIM_BUFFER_HOST, -1, 0, &b) != 0) {
    printf("buffer_pair: FAIL: create '%s' (%s)\n", name, poolshim_buffer_error());
    ++failures;
    return;
  }
  printf("holding %s\n", name);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  poolshim_buffer_unlink(name, 0);
  poolshim_buffer_close(b);
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "check") == 0) {
    check();
  } else if (argc >= 3 && strcmp(argv[1], "roundtrip") == 0) {
    roundtrip(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1000);
  } else if (argc >= 3 && strcmp(argv[1], "hold") == 0) {
    hold(argv[2]);
  } else if (argc >= 3 && strcmp(argv[1], "bench") == 0) {
    bench(strtoull(argv[2], NULL, 0));
  } else {
    fprintf(stderr, "usage: buffer_pair check | bench BYTES | roundtrip N | hold NAME\n");
    return 2;
  }
  printf("buffer_pair: %s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}

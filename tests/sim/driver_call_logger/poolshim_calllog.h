/* Phase markers for programs run under the driver-call logger (libpoolshim_calllog.so). A program
 * declares the hook weak, so it runs unchanged without the logger; with it, every driver call made
 * after poolshim_calllog_phase("x") and before the next marker is attributed to phase "x". */
#ifndef POOLSHIM_CALLLOG_H
#define POOLSHIM_CALLLOG_H

#ifdef __cplusplus
extern "C" {
#endif

/* Starts a new phase named `name` (up to 63 bytes, no spaces). Thread-safe; never allocates. */
__attribute__((weak)) void poolshim_calllog_phase(const char* name);

#ifdef __cplusplus
}
#endif

/* Calls the logger's marker when the logger is preloaded; does nothing otherwise. */
static inline void poolshim_calllog_mark(const char* name) {
  if (poolshim_calllog_phase) poolshim_calllog_phase(name);
}

#endif

/* The driver-call logger's trampolines: one 16-byte thunk per wrapped driver entry point. A thunk
 * counts the call and tail-jumps to the real function, so it forwards any signature untouched
 * (arguments, stack, return value and return address are never seen), which is what lets the
 * logger wrap hundreds of driver functions without knowing a single prototype. */
#include "calllog_config.h"

#if !defined(__x86_64__)
#error "the driver-call logger's thunks are written for x86-64 only"
#endif

  .text
  .p2align 4
  .globl poolshim_calllog_thunks
  .hidden poolshim_calllog_thunks
  .type poolshim_calllog_thunks, @function
poolshim_calllog_thunks:
  /* Thunk n: slot n's counter and target sit at 8*n in the two tables below. The lock prefix
   * makes concurrent callers count exactly; only the flags are clobbered, which no calling
   * convention preserves across a call. */
  .altmacro
  .macro POOLSHIM_CALLLOG_THUNK n
  1:
    lock incq poolshim_calllog_counts+8*\n(%rip)
    jmp *poolshim_calllog_targets+8*\n(%rip)
    .skip POOLSHIM_CALLLOG_THUNK_BYTES - (. - 1b), 0xcc
  .endm
  .set poolshim_calllog_i, 0
  .rept POOLSHIM_CALLLOG_SLOTS
    POOLSHIM_CALLLOG_THUNK %poolshim_calllog_i
    .set poolshim_calllog_i, poolshim_calllog_i + 1
  .endr
  .noaltmacro
poolshim_calllog_thunks_end:
  .size poolshim_calllog_thunks, poolshim_calllog_thunks_end - poolshim_calllog_thunks
  /* The C++ side computes thunk n's address as base + 16*n; fail the build if that is not so. */
  .if (poolshim_calllog_thunks_end - poolshim_calllog_thunks) - POOLSHIM_CALLLOG_THUNK_BYTES * POOLSHIM_CALLLOG_SLOTS
  .error "driver-call logger: thunk stride is not POOLSHIM_CALLLOG_THUNK_BYTES"
  .endif

  .bss
  .p2align 6
  .globl poolshim_calllog_counts
  .hidden poolshim_calllog_counts
  .type poolshim_calllog_counts, @object
  .size poolshim_calllog_counts, 8 * POOLSHIM_CALLLOG_SLOTS
poolshim_calllog_counts:
  .zero 8 * POOLSHIM_CALLLOG_SLOTS

  .p2align 6
  .globl poolshim_calllog_targets
  .hidden poolshim_calllog_targets
  .type poolshim_calllog_targets, @object
  .size poolshim_calllog_targets, 8 * POOLSHIM_CALLLOG_SLOTS
poolshim_calllog_targets:
  .zero 8 * POOLSHIM_CALLLOG_SLOTS

  .section .note.GNU-stack,"",@progbits

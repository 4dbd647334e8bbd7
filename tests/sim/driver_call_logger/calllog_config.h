/* Sizes shared by the driver-call logger's C++ side and its assembler thunks (calllog_thunks.S).
 * Plain C preprocessor only: this header is included from a .S file. */
#ifndef POOLSHIM_CALLLOG_CONFIG_H
#define POOLSHIM_CALLLOG_CONFIG_H

/* Wrapped entry points. The real cudart looks up several hundred driver symbols, some with more
 * than one version or stream flavour, so 1024 could run out; 4096 thunks cost 64 KiB of text. */
#define POOLSHIM_CALLLOG_SLOTS 4096
/* Bytes per thunk: lock incq (8) + jmp *mem (6), padded with int3. The .S file checks it. */
#define POOLSHIM_CALLLOG_THUNK_BYTES 16

#endif

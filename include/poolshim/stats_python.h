/* The Python code table of a stats file (POOLSHIM_STATS=python; include/poolshim/stats_file.h):
 * the python[python_size] area at the file's python_offset. The shim interns each code object that
 * appears in a recorded stack once (its file name, qualified name, first line and line table,
 * copied), so that poolshim-stats can turn a Python frame value into "qualname (file:line)" after
 * the process is gone, without the interpreter.
 *
 * Layout, version 1 (host byte order; offsets from the start of the table, not of the file):
 *   header                       struct poolshim_stats_python_header
 *   codes[code_capacity]         struct poolshim_stats_python_code, open-addressed by code object
 *                                address (insert-only; an entry is complete when ready == 1)
 *   heap[heap_size]              UTF-8 names and copied line tables, handed out by bumping heap_used
 *
 * A Python frame value (a stack frame whose top 16 bits are POOLSHIM_STATS_PYFRAME_TAG):
 *   bits 47..24  index of its code in codes[] plus 1 (0: the code could not be recorded)
 *   bits 23..0   the instruction running in that code, in 16-bit code units from the start of the
 *                bytecode (what CPython's frame.f_lasti gives divided by 2), 0xffffff: unknown
 * Lines: the location table format of CPython 3.11 to 3.13 (linetable_format 1; CPython's
 * Objects/locations.md): entries of one first byte 1cccclll (c: code, l: code units covered - 1)
 * and varint operands; the line starts at first_line and moves by each entry's line delta; code 15
 * means no location. A table cut short (flags bit 1) names no line past its end.
 * C-compatible: the tool and other readers include it. Writers: the shim only. A reader of a live
 * file takes an entry only when ready == 1; a heap range is checked against heap_size. */
#ifndef POOLSHIM_STATS_PYTHON_H
#define POOLSHIM_STATS_PYTHON_H

#include <stdint.h>

#define POOLSHIM_STATS_PYTHON_MAGIC "PSHPYCT"
#define POOLSHIM_STATS_PYTHON_VERSION 1
#define POOLSHIM_STATS_PYTHON_LINETABLE_LOCATIONS 1                          /* CPython 3.11+ location table */
#define POOLSHIM_STATS_PYFRAME_CODE(v) ((uint32_t)(((v) >> 24) & 0xffffffu)) /* index + 1 */
#define POOLSHIM_STATS_PYFRAME_INSTR(v) ((uint32_t)((v)&0xffffffu))
#define POOLSHIM_STATS_PYFRAME_INSTR_UNKNOWN 0xffffffu

/* poolshim_stats_python_header.flags */
#define POOLSHIM_STATS_PYTHON_FLAG_CODES_FULL 1u /* a code object found no entry */
/* poolshim_stats_python_code.flags */
#define POOLSHIM_STATS_PYCODE_FLAG_NAME_CUT 1u      /* a name cut short or unreadable ("?") */
#define POOLSHIM_STATS_PYCODE_FLAG_LINETABLE_CUT 2u /* the line table cut short */
#define POOLSHIM_STATS_PYCODE_FLAG_HEAP_FULL 4u     /* the heap was full (sizes 0) */

#ifdef __cplusplus
extern "C" {
#endif

struct poolshim_stats_python_header {
  char magic[8];              /* POOLSHIM_STATS_PYTHON_MAGIC, NUL-padded */
  uint32_t version;           /* POOLSHIM_STATS_PYTHON_VERSION */
  uint32_t header_size;       /* sizeof(struct poolshim_stats_python_header) */
  uint64_t size;              /* bytes of the whole table */
  uint32_t python_hexversion; /* the interpreter's PY_VERSION_HEX (Py_Version) */
  uint32_t linetable_format;  /* POOLSHIM_STATS_PYTHON_LINETABLE_* */
  char python_version[64];    /* Py_GetVersion() up to its first space, NUL-terminated */
  uint64_t codes_offset;
  uint32_t code_capacity; /* a power of two */
  uint32_t code_size;     /* sizeof(struct poolshim_stats_python_code) */
  uint64_t heap_offset;
  uint64_t heap_size;
  uint64_t heap_used;  /* bytes handed out; past heap_size: what did not fit was dropped */
  uint32_t codes_used; /* entries claimed */
  uint32_t flags;      /* POOLSHIM_STATS_PYTHON_FLAG_*; bit 0: a code object found no
                          entry (table full) */
};

struct poolshim_stats_python_code {
  uint64_t code;      /* the code object's address in the process; 0: empty entry */
  uint32_t ready;     /* 1 once every other field is written (release order) */
  int32_t first_line; /* co_firstlineno */
  /* The addresses of its file name, qualified name and line table objects: a later code object
   * at the same address (the first one freed) is told apart by these. */
  uint64_t filename_obj, qualname_obj, linetable_obj;
  uint64_t filename_at; /* heap ranges (offsets from the table's start), UTF-8, no NUL */
  uint64_t qualname_at;
  uint64_t linetable_at; /* co_linetable's bytes */
  uint32_t filename_size, qualname_size, linetable_size;
  uint32_t flags; /* POOLSHIM_STATS_PYCODE_FLAG_*; bit 0: a name cut short or
                     unreadable ("?"); bit 1: the line
                     table cut short; bit 2: the heap was full (sizes 0) */
};

#ifdef __cplusplus
}
#endif

#endif /* POOLSHIM_STATS_PYTHON_H */

// libpoolshim.so's dlsym: a small x86-64 stub around intercept::answer_dlsym. An answered lookup
// returns our pointer; anything else is forwarded with a tail jump, so the real dlsym sees the
// original caller's return address and RTLD_NEXT/RTLD_DEFAULT resolve relative to that caller (a
// plain call made LLVM OpenMP under `import torch` resolve relative to other shims). The stub
// touches no TLS, takes no lock and never allocates.
#include <dlfcn.h>

#include "intercept/proc_address.h"

#if !defined(__x86_64__)
#error "libpoolshim.so's dlsym stub is written for x86-64 only"
#endif

extern "C" __attribute__((visibility("hidden"))) poolshim::intercept::dlsym_answer poolshim_dlsym_answer(
    void* handle, const char* name) noexcept {
  return poolshim::intercept::answer_dlsym(handle, name);
}

// rdi = handle and rsi = name are saved around the call (the stack stays 16-byte aligned at the
// call: 8 for the return address + 2*8 saved + 8 padding); the answer comes back in rax:rdx.
// rdx != 0: restore the arguments, drop our frame and jump to the real dlsym.
asm(R"(
  .text
  .p2align 4
  .globl dlsym
  .type dlsym, @function
dlsym:
  .cfi_startproc
  pushq %rdi
  .cfi_adjust_cfa_offset 8
  pushq %rsi
  .cfi_adjust_cfa_offset 8
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call poolshim_dlsym_answer
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %rsi
  .cfi_adjust_cfa_offset -8
  popq %rdi
  .cfi_adjust_cfa_offset -8
  testq %rdx, %rdx
  jnz 1f
  ret
1:
  jmp *%rdx
  .cfi_endproc
  .size dlsym, .-dlsym
)");

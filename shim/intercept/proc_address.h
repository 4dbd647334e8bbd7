// How the shim is reached: the answers of the exported dlsym, and the table that maps the real
// driver's entry points (its exports, and what its cuGetProcAddress hands out for each hooked ABI)
// onto our wrappers of the same ABI, so the caller's cudaVersion keeps choosing the ABI.
#pragma once

#include <cuda.h>

#include <type_traits>

namespace poolshim {
struct real_driver;
}

namespace poolshim::intercept {

// What the dlsym stub does: return `value`, or (when `forward` is set) jump to `forward` with the
// caller's arguments and return address untouched, so the real dlsym sees the original caller and
// RTLD_NEXT keeps resolving relative to it. Returned in rax:rdx (two INTEGER eightbytes).
struct dlsym_answer {
  void* value;
  void* forward;
};
static_assert(std::is_trivially_copyable_v<dlsym_answer> && sizeof(dlsym_answer) == 16);

// Never allocates, locks or initialises anything: a name check for everything that is not a hooked
// cu* name. For a hooked name, our wrapper when the handle's lookup (RTLD_DEFAULT and RTLD_NEXT:
// the next definition after the shim) finds the driver's own symbol; otherwise the real dlsym
// answers exactly as it would without us.
dlsym_answer answer_dlsym(void* handle, const char* name) noexcept;

// Our wrapper for a pointer the real driver handed out, or null when the table does not know it.
void* wrapper_for(const real_driver& driver, void* real) noexcept;

// cuGetProcAddress (CUDA 11.3 ABI, no status) and cuGetProcAddress_v2: the real lookup first, then
// the pointer it returned is replaced by our wrapper of the same ABI when the shim knows it.
CUresult get_proc_address_v1(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags) noexcept;
CUresult get_proc_address_v2(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                             CUdriverProcAddressQueryResult* status) noexcept;

}  // namespace poolshim::intercept

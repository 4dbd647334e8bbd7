// Simulated CUDA driver: context-independent library loading (cuLibrary*), bookkeeping only. The
// simulator runs no device code; NVIDIA's cudart still loads its fat binary with cuLibraryLoadData
// at its first call and unloads it at exit (tests/sim/fixtures/cudart-13.0-lookups.tsv), and so
// does the stand-in cudart, so the calls must succeed and the handles must be real.
#include "sim_state.h"

using namespace sim;

POOLSHIM_SIM_API CUresult cuLibraryLoadData(CUlibrary* library, const void* code, CUjit_option* /*jitOptions*/,
                                            void** /*jitOptionsValues*/, unsigned int /*numJitOptions*/,
                                            CUlibraryOption* /*libraryOptions*/, void** /*libraryOptionValues*/,
                                            unsigned int /*numLibraryOptions*/) {
  if (CUresult r = api_enter("cuLibraryLoadData"); r != CUDA_SUCCESS) return r;
  if (library == nullptr || code == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  auto* l = new CUlib_st();  // one handle per load, even of the same image
  l->code = code;
  g.libraries.insert(l);
  *library = l;
  return CUDA_SUCCESS;
}

POOLSHIM_SIM_API CUresult cuLibraryUnload(CUlibrary library) {
  if (CUresult r = api_enter("cuLibraryUnload"); r != CUDA_SUCCESS) return r;
  if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
  state& g = get();
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.libraries.erase(library) == 0) return CUDA_ERROR_INVALID_HANDLE;
  g.graveyard.push_back(library);  // never freed: a second unload stays a clean INVALID_HANDLE
  return CUDA_SUCCESS;
}

// No library holds device code here, so no kernel is ever found.
POOLSHIM_SIM_API CUresult cuLibraryGetKernel(CUkernel* kernel, CUlibrary library, const char* name) {
  if (CUresult r = api_enter("cuLibraryGetKernel"); r != CUDA_SUCCESS) return r;
  if (kernel == nullptr || library == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lk(get().mu);
  if (get().libraries.count(library) == 0) return CUDA_ERROR_INVALID_HANDLE;
  return CUDA_ERROR_NOT_FOUND;
}

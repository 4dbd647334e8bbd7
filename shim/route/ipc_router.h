// poolshim IPC handles for small pooled blocks (DESIGN.md, "Device pool"): a real handle would open
// the whole 2 MiB segment, i.e. the wrong bytes, so cudaIpcGetMemHandle of a small block returns a
// poolshim handle instead — a magic and a 128-bit random token that poolshimd maps to the segment's
// real handle and the block's offset, for processes of the same uid. An importer running the shim
// resolves it and opens the segment's real handle; one without the shim gets CUDA's invalid-value
// error from the driver (the handle is not one of its own), never wrong bytes. Freeing the block
// ends its export. Each function returns false when the call is not its business.
#pragma once

#include <cuda.h>

namespace poolshim::ipc_router {

// cuIpcGetMemHandle of a small pooled block: true with *result set when a poolshim handle was made
// (false: no daemon, or not a small block's start; the caller refuses as before).
bool try_export(CUipcMemHandle* handle, CUdeviceptr dptr, CUresult* result) noexcept;
// cuIpcOpenMemHandle_v2 of a poolshim handle: true with *result (and *dptr) set.
bool try_open(CUdeviceptr* dptr, const CUipcMemHandle& handle, unsigned flags, CUresult* result) noexcept;
// cuIpcCloseMemHandle of a pointer try_open returned.
bool try_close(CUdeviceptr dptr, CUresult* result) noexcept;
// A block was freed: its export, if any, ends (one relaxed load when nothing was exported).
void forget_export(CUdeviceptr block) noexcept;

}  // namespace poolshim::ipc_router

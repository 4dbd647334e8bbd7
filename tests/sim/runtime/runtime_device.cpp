// Device management and version queries of the simulator's libcudart: device count, properties
// and attributes, synchronisation, peer access, device flags, versions, and the driver entry-point
// lookups (cudaGetDriverEntryPoint*), each a translation onto the driver API.
#include <atomic>
#include <cstring>

#include "runtime_internal.h"

namespace poolshim::sim_rt {
namespace {

// cudaSetDeviceFlags is only recorded: the simulated contexts have no scheduling policy to change.
constexpr int max_flag_devices = 64;
std::atomic<unsigned int> g_device_flags[max_flag_devices];

// The sim's driver may not know every attribute; an attribute it calls invalid reads as 0, like
// the fields this runtime does not fill at all. Any other failure (bad device, sticky) is real.
template <class Field>
CUresult read_attribute(Field& field, CUdevice_attribute attr, CUdevice dev) noexcept {
  int value = 0;
  CUresult r = driver().cuDeviceGetAttribute(&value, attr, dev);
  if (r == CUDA_ERROR_INVALID_VALUE) r = CUDA_SUCCESS;
  field = static_cast<Field>(value);
  return r;
}

}  // namespace

// Every field of cudaDeviceProp this runtime reports: the name, total memory and UUID (in the order
// cudart 13.0 reads them at start-up), then one cuDeviceGetAttribute per attribute-backed field.
CUresult read_device_properties(cudaDeviceProp& p, CUdevice dev) noexcept {
  const driver_table& d = driver();
  CUresult r = d.cuDeviceGetName(p.name, static_cast<int>(sizeof p.name), dev);
  if (r != CUDA_SUCCESS) return r;
  r = d.cuDeviceTotalMem(&p.totalGlobalMem, dev);
  if (r != CUDA_SUCCESS) return r;
  CUuuid uuid{};
  r = d.cuDeviceGetUuid(&uuid, dev);  // the CUDA 9.2 ABI, as cudart 13.0 looks it up
  if (r != CUDA_SUCCESS) return r;
  static_assert(sizeof uuid == sizeof p.uuid);
  std::memcpy(&p.uuid, &uuid, sizeof uuid);

  CUresult status = CUDA_SUCCESS;
  auto get = [&](auto& field, CUdevice_attribute attr) {
    if (status == CUDA_SUCCESS) status = read_attribute(field, attr, dev);
  };
  get(p.sharedMemPerBlock, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK);
  get(p.regsPerBlock, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK);
  get(p.warpSize, CU_DEVICE_ATTRIBUTE_WARP_SIZE);
  get(p.memPitch, CU_DEVICE_ATTRIBUTE_MAX_PITCH);
  get(p.maxThreadsPerBlock, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  get(p.maxThreadsDim[0], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X);
  get(p.maxThreadsDim[1], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y);
  get(p.maxThreadsDim[2], CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z);
  get(p.maxGridSize[0], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X);
  get(p.maxGridSize[1], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y);
  get(p.maxGridSize[2], CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z);
  get(p.totalConstMem, CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY);
  get(p.major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  get(p.minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  get(p.textureAlignment, CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT);
  get(p.texturePitchAlignment, CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT);
  get(p.multiProcessorCount, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  get(p.integrated, CU_DEVICE_ATTRIBUTE_INTEGRATED);
  get(p.canMapHostMemory, CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY);
  get(p.surfaceAlignment, CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT);
  get(p.concurrentKernels, CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS);
  get(p.ECCEnabled, CU_DEVICE_ATTRIBUTE_ECC_ENABLED);
  get(p.pciBusID, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID);
  get(p.pciDeviceID, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
  get(p.pciDomainID, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID);
  get(p.tccDriver, CU_DEVICE_ATTRIBUTE_TCC_DRIVER);
  get(p.asyncEngineCount, CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT);
  get(p.unifiedAddressing, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING);
  get(p.memoryBusWidth, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
  get(p.l2CacheSize, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
  get(p.persistingL2CacheMaxSize, CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE);
  get(p.maxThreadsPerMultiProcessor, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR);
  get(p.streamPrioritiesSupported, CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED);
  get(p.globalL1CacheSupported, CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED);
  get(p.localL1CacheSupported, CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED);
  get(p.sharedMemPerMultiprocessor, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
  get(p.regsPerMultiprocessor, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR);
  get(p.managedMemory, CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY);
  get(p.isMultiGpuBoard, CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD);
  get(p.multiGpuBoardGroupID, CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID);
  get(p.hostNativeAtomicSupported, CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED);
  get(p.pageableMemoryAccess, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS);
  get(p.concurrentManagedAccess, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS);
  get(p.computePreemptionSupported, CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED);
  get(p.canUseHostPointerForRegisteredMem, CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM);
  get(p.cooperativeLaunch, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH);
  get(p.sharedMemPerBlockOptin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  get(p.pageableMemoryAccessUsesHostPageTables, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES);
  get(p.directManagedMemAccessFromHost, CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST);
  get(p.maxBlocksPerMultiProcessor, CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR);
  get(p.accessPolicyMaxWindowSize, CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE);
  get(p.reservedSharedMemPerBlock, CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK);
  get(p.hostRegisterSupported, CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED);
  get(p.sparseCudaArraySupported, CU_DEVICE_ATTRIBUTE_SPARSE_CUDA_ARRAY_SUPPORTED);
  get(p.hostRegisterReadOnlySupported, CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED);
  get(p.timelineSemaphoreInteropSupported, CU_DEVICE_ATTRIBUTE_TIMELINE_SEMAPHORE_INTEROP_SUPPORTED);
  get(p.memoryPoolsSupported, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED);
  get(p.gpuDirectRDMASupported, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED);
  get(p.gpuDirectRDMAFlushWritesOptions, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_FLUSH_WRITES_OPTIONS);
  get(p.gpuDirectRDMAWritesOrdering, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING);
  get(p.memoryPoolSupportedHandleTypes, CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES);
  get(p.deferredMappingCudaArraySupported, CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED);
  get(p.ipcEventSupported, CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED);
  get(p.clusterLaunch, CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH);
  get(p.unifiedFunctionPointers, CU_DEVICE_ATTRIBUTE_UNIFIED_FUNCTION_POINTERS);
  get(p.deviceNumaConfig, CU_DEVICE_ATTRIBUTE_NUMA_CONFIG);
  get(p.deviceNumaId, CU_DEVICE_ATTRIBUTE_NUMA_ID);
  get(p.mpsEnabled, CU_DEVICE_ATTRIBUTE_MPS_ENABLED);
  get(p.hostNumaId, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID);
  get(p.gpuPciDeviceID, CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID);
  get(p.gpuPciSubsystemID, CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID);
  get(p.hostNumaMultinodeIpcSupported, CU_DEVICE_ATTRIBUTE_HOST_NUMA_MULTINODE_IPC_SUPPORTED);
  return status;
}

namespace {

cudaDriverEntryPointQueryResult to_runtime_status(CUdriverProcAddressQueryResult s) noexcept {
  switch (s) {
    case CU_GET_PROC_ADDRESS_SUCCESS:
      return cudaDriverEntryPointSuccess;
    case CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT:
      return cudaDriverEntryPointVersionNotSufficent;
    default:
      return cudaDriverEntryPointSymbolNotFound;
  }
}

// cudaEnableDefault means "per-thread if this code was built per-thread": the _ptsz export is what
// such code calls, so there it becomes the driver's per-thread search; the other flags (1:1 with
// CU_GET_PROC_ADDRESS_*) pass unchanged.
template <default_stream S>
cudaError_t entry_point_by_version(const char* symbol, void** funcPtr, unsigned int cudaVersion,
                                   unsigned long long flags, cudaDriverEntryPointQueryResult* driverStatus) {
  return api(needs::driver, [&]() -> cudaError_t {
    cuuint64_t driver_flags = flags;
    if (S == default_stream::per_thread && flags == cudaEnableDefault)
      driver_flags = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult r = driver().get_proc_address(symbol, funcPtr, static_cast<int>(cudaVersion), driver_flags, &status);
    if (driverStatus != nullptr) *driverStatus = to_runtime_status(status);
    return from_driver(r);
  });
}

// The deprecated form asks for the ABI of this runtime's own version.
template <default_stream S>
cudaError_t entry_point(const char* symbol, void** funcPtr, unsigned long long flags,
                        cudaDriverEntryPointQueryResult* driverStatus) {
  return entry_point_by_version<S>(symbol, funcPtr, runtime_cuda_version, flags, driverStatus);
}

}  // namespace
}  // namespace poolshim::sim_rt

using namespace poolshim::sim_rt;

// On failure *count is left as it was, as NVIDIA's cudart leaves it when there is no driver.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  return api(needs::driver, [&]() -> cudaError_t {
    if (count == nullptr) return cudaErrorInvalidValue;
    return from_driver(driver().cuDeviceGetCount(count));
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return api(needs::driver, [&]() -> cudaError_t {
    if (prop == nullptr) return cudaErrorInvalidValue;
    CUdevice dev = 0;
    CUresult r = driver().cuDeviceGet(&dev, device);
    if (r != CUDA_SUCCESS) return from_driver(r);
    cudaDeviceProp filled{};
    r = read_device_properties(filled, dev);
    if (r != CUDA_SUCCESS) return from_driver(r);
    *prop = filled;
    return cudaSuccess;
  });
}

// cudaDeviceAttr and CUdevice_attribute share their numbers.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  return api(needs::driver, [&]() -> cudaError_t {
    CUdevice dev = 0;
    CUresult r = driver().cuDeviceGet(&dev, device);
    if (r == CUDA_SUCCESS) r = driver().cuDeviceGetAttribute(value, static_cast<CUdevice_attribute>(attr), dev);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  return api(needs::context, [&]() -> cudaError_t {
    return from_driver(driver().cuCtxSynchronize(nullptr));  // NULL: the current context
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceCanAccessPeer(int* canAccessPeer, int device, int peerDevice) {
  return api(needs::driver, [&]() -> cudaError_t {
    const driver_table& d = driver();
    CUdevice dev = 0;
    CUdevice peer = 0;
    CUresult r = d.cuDeviceGet(&dev, device);
    if (r == CUDA_SUCCESS) r = d.cuDeviceGet(&peer, peerDevice);
    if (r == CUDA_SUCCESS) r = d.cuDeviceCanAccessPeer(canAccessPeer, dev, peer);
    return from_driver(r);
  });
}

// Peer access is granted from the current context to the peer's primary context, which the
// runtime initialises if it has not yet.
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceEnablePeerAccess(int peerDevice, unsigned int flags) {
  return api(needs::context, [&]() -> cudaError_t {
    CUcontext peer = nullptr;
    CUresult r = primary_context(peerDevice, &peer);
    if (r == CUDA_SUCCESS) r = driver().cuCtxEnablePeerAccess(peer, flags);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDeviceDisablePeerAccess(int peerDevice) {
  return api(needs::context, [&]() -> cudaError_t {
    CUcontext peer = nullptr;
    CUresult r = primary_context(peerDevice, &peer);
    if (r == CUDA_SUCCESS) r = driver().cuCtxDisablePeerAccess(peer);
    return from_driver(r);
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaSetDeviceFlags(unsigned int flags) {
  return api(needs::driver, [&]() -> cudaError_t {
    const unsigned int schedule = flags & cudaDeviceScheduleMask;
    const bool one_schedule = schedule == cudaDeviceScheduleAuto || schedule == cudaDeviceScheduleSpin ||
                              schedule == cudaDeviceScheduleYield || schedule == cudaDeviceScheduleBlockingSync;
    if ((flags & ~static_cast<unsigned int>(cudaDeviceMask)) != 0 || !one_schedule) return cudaErrorInvalidValue;
    const int device = current_device();
    if (device < 0 || device >= max_flag_devices) return cudaErrorInvalidDevice;
    g_device_flags[device].store(flags, std::memory_order_relaxed);
    return cudaSuccess;
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaGetDeviceFlags(unsigned int* flags) {
  return api(needs::driver, [&]() -> cudaError_t {
    if (flags == nullptr) return cudaErrorInvalidValue;
    const int device = current_device();
    if (device < 0 || device >= max_flag_devices) return cudaErrorInvalidDevice;
    *flags = g_device_flags[device].load(std::memory_order_relaxed);
    return cudaSuccess;
  });
}

// "If no driver is installed, then 0 is returned as the driver version" (cuda_runtime_api.h).
POOLSHIM_RT_API cudaError_t CUDARTAPI cudaDriverGetVersion(int* driverVersion) {
  return api(needs::nothing, [&]() -> cudaError_t {
    if (driverVersion == nullptr) return cudaErrorInvalidValue;
    if (driver_load_error() == cudaErrorInsufficientDriver || driver().cuDriverGetVersion == nullptr) {
      *driverVersion = 0;
      return cudaSuccess;
    }
    return from_driver(driver().cuDriverGetVersion(driverVersion));
  });
}

POOLSHIM_RT_API cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* runtimeVersion) {
  return api(needs::nothing, [&]() -> cudaError_t {
    if (runtimeVersion == nullptr) return cudaErrorInvalidValue;
    *runtimeVersion = runtime_cuda_version;
    return cudaSuccess;
  });
}

POOLSHIM_RT_STREAM_PAIR(cudaGetDriverEntryPoint, _ptsz, entry_point,
                        (const char* symbol, void** funcPtr, unsigned long long flags,
                         cudaDriverEntryPointQueryResult* driverStatus),
                        (symbol, funcPtr, flags, driverStatus))

POOLSHIM_RT_STREAM_PAIR(cudaGetDriverEntryPointByVersion, _ptsz, entry_point_by_version,
                        (const char* symbol, void** funcPtr, unsigned int cudaVersion, unsigned long long flags,
                         cudaDriverEntryPointQueryResult* driverStatus),
                        (symbol, funcPtr, cudaVersion, flags, driverStatus))

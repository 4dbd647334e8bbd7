// Memory shared between processes: legacy IPC handles (cudaIpcGetMemHandle / cudaIpcOpenMemHandle),
// interprocess events (cuIpcGetEventHandle / cuIpcOpenEventHandle, ordering one process's stream
// after another's record)
// and VMM allocations exported as POSIX file descriptors (cuMemCreate, cuMemExportToShareableHandle,
// passed with SCM_RIGHTS, imported and mapped by the child). Each cross-process test is a parent
// test and a child test; the child runs in a fresh process started by the parent and skips in a
// normal run of the suite. Driver functions come from cudaGetDriverEntryPointByVersion.
#include <cudaTypedefs.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "child_process.h"
#include "conformance.h"

namespace conformance {
namespace {

constexpr std::size_t ipc_bytes = std::size_t{1} << 20;
constexpr unsigned char parent_bytes = 0xc3, child_bytes = 0x3c;
constexpr const char* handle_env = "POOLSHIM_CONF_IPC_HANDLE";
constexpr const char* vmm_size_env = "POOLSHIM_CONF_VMM_SIZE";

static_assert(sizeof(cudaIpcMemHandle_t) == 64 && sizeof(CUipcMemHandle) == 64);

// ---- legacy IPC -----------------------------------------------------------------------------------

TEST(Ipc, HandleOpenedInAnotherProcessSharesTheBytesBothWays) {
  init_device0();
  auto d = device_alloc(ipc_bytes);
  ASSERT_NE(nullptr, d.get());
  fill_device(d.get(), parent_bytes, ipc_bytes);
  cudaIpcMemHandle_t h{};
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&h, d.get()));
  const std::string child = "IpcChild.OpensTheParentsHandleChecksItAndWritesAReply";
  auto r = run_child_test(child, {std::string(handle_env) + "=" + to_hex(&h, sizeof h)});
  ASSERT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
  EXPECT_TRUE(device_bytes_are(d.get(), child_bytes, ipc_bytes)) << "the child's writes are lost";
}

TEST(IpcChild, OpensTheParentsHandleChecksItAndWritesAReply) {
  const char* hex = parent_env(handle_env);
  if (hex == nullptr) GTEST_SKIP() << "runs as the child of Ipc.HandleOpenedInAnotherProcess...";
  cudaIpcMemHandle_t h{};
  ASSERT_TRUE(from_hex(hex, &h, sizeof h));
  init_device0();
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
  ASSERT_NE(nullptr, p);
  cudaPointerAttributes a{};
  ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, p));
  EXPECT_EQ(cudaMemoryTypeDevice, a.type);
  EXPECT_TRUE(device_bytes_are(p, parent_bytes, ipc_bytes));
  // Opening it again in the same context adds a reference and returns the same pointer.
  void* again = nullptr;
  ASSERT_EQ(cudaSuccess, cudaIpcOpenMemHandle(&again, h, cudaIpcMemLazyEnablePeerAccess));
  EXPECT_EQ(p, again);
  EXPECT_EQ(cudaSuccess, cudaIpcCloseMemHandle(again));
  // One reference is left: the mapping still works.
  fill_device(p, child_bytes, ipc_bytes);
  EXPECT_TRUE(device_bytes_are(p, child_bytes, ipc_bytes));
  EXPECT_EQ(cudaSuccess, cudaIpcCloseMemHandle(p));
}

TEST(Ipc, OpeningAHandleInItsOwnProcessFails) {
  init_device0();
  auto d = device_alloc(ipc_bytes);
  cudaIpcMemHandle_t h{};
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&h, d.get()));
  clear_last_error();
  void* p = nullptr;
  // 201 "invalid device context" is the reported answer (CUDA_FACTS §8, UNV; a GPU run verifies).
  EXPECT_EQ(cudaErrorDeviceUninitialized, cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
  clear_last_error();
  fill_device(d.get(), 0x21, ipc_bytes);  // not sticky
  EXPECT_TRUE(device_bytes_are(d.get(), 0x21, ipc_bytes));
}

TEST(Ipc, HandleOfAnInteriorPointerIsTheHandleOfItsAllocation) {
  init_device0();
  auto d = device_alloc(ipc_bytes);
  cudaIpcMemHandle_t base{}, inner{};
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&base, d.get()));
  // The importer receives the allocation's base, so exporters send the offset themselves (ucx,
  // tensorpipe; CUDA_FACTS §8, UNV: a GPU run verifies).
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&inner, bytes(d) + 4096));
  EXPECT_EQ(0, std::memcmp(&base, &inner, sizeof base));
  // Asking again is cheap and gives the same handle.
  cudaIpcMemHandle_t again{};
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&again, d.get()));
  EXPECT_EQ(0, std::memcmp(&base, &again, sizeof base));
}

TEST(Ipc, GetMemHandleOfHostMemoryIsInvalidValue) {
  init_device0();
  clear_last_error();
  int on_stack = 0;
  cudaIpcMemHandle_t h{};
  EXPECT_EQ(cudaErrorInvalidValue, cudaIpcGetMemHandle(&h, &on_stack));
  clear_last_error();
}

// ---- IPC events -----------------------------------------------------------------------------------

struct ipc_event_api {
  PFN_cuIpcGetEventHandle_v4010 get = driver_fn<PFN_cuIpcGetEventHandle_v4010>("cuIpcGetEventHandle");
  PFN_cuIpcOpenEventHandle_v4010 open = driver_fn<PFN_cuIpcOpenEventHandle_v4010>("cuIpcOpenEventHandle");
  PFN_cuStreamWaitEvent_v3020 wait = driver_fn<PFN_cuStreamWaitEvent_v3020>("cuStreamWaitEvent");
  PFN_cuEventQuery_v2000 query = driver_fn<PFN_cuEventQuery_v2000>("cuEventQuery");
  bool complete() const { return get && open && wait && query; }
};
constexpr const char* event_handle_env = "POOLSHIM_CONF_IPC_EVENT";

// The parent's copy into shared memory is held behind a gate and followed by a record of an
// interprocess event; the child opens the memory and the event, makes its stream wait on the event
// and copies the memory out. The child's copy must see the parent's bytes although it was queued
// while the parent's copy could not run; the parent opens the gate only once the child says its
// wait is queued (over the inherited socket).
TEST(IpcEvent, WaitInAnotherProcessOrdersItsWorkAfterTheRecord) {
  init_device0();
  ipc_event_api api;
  ASSERT_TRUE(api.complete()) << "an IPC event entry point is missing";
  auto d = device_alloc(ipc_bytes);
  ASSERT_NE(nullptr, d.get());
  fill_device(d.get(), 0, ipc_bytes);
  auto src = pinned_alloc(ipc_bytes);
  std::memset(src.get(), parent_bytes, ipc_bytes);
  auto ev = make_event(cudaEventInterprocess | cudaEventDisableTiming);
  cudaIpcMemHandle_t mh{};
  ASSERT_EQ(cudaSuccess, cudaIpcGetMemHandle(&mh, d.get()));
  CUipcEventHandle eh{};
  ASSERT_EQ(CUDA_SUCCESS, api.get(&eh, reinterpret_cast<CUevent>(ev.get())));
  auto s = make_stream(cudaStreamNonBlocking);
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  {
    gate g;
    ASSERT_EQ(cudaSuccess, g.block(s.get()));
    ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(d.get(), src.get(), ipc_bytes, cudaMemcpyHostToDevice, s.get()));
    ASSERT_EQ(cudaSuccess, cudaEventRecord(ev.get(), s.get()));
    std::thread opener([&] {
      pollfd p{sv[0], POLLIN, 0};
      char c = 0;
      if (poll(&p, 1, 30000) == 1) (void)!read(sv[0], &c, 1);
      g.open();
    });
    const std::string child = "IpcEventChild.WaitsOnTheParentsEventThenReadsItsBytes";
    auto r = run_child_test(child,
                            {std::string(handle_env) + "=" + to_hex(&mh, sizeof mh),
                             std::string(event_handle_env) + "=" + to_hex(&eh, sizeof eh)},
                            sv[1]);
    shutdown(sv[0], SHUT_RDWR);
    opener.join();
    EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
    EXPECT_FALSE(g.timed_out());
  }
  close(sv[0]);
  close(sv[1]);
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(s.get()));
}

TEST(IpcEventChild, WaitsOnTheParentsEventThenReadsItsBytes) {
  const char* mem_hex = parent_env(handle_env);
  const char* event_hex = parent_env(event_handle_env);
  const char* fd_var = parent_env(inherited_fd_env);
  if (mem_hex == nullptr || event_hex == nullptr || fd_var == nullptr)
    GTEST_SKIP() << "runs as the child of IpcEvent.WaitInAnotherProcess...";
  cudaIpcMemHandle_t mh{};
  CUipcEventHandle eh{};
  ASSERT_TRUE(from_hex(mem_hex, &mh, sizeof mh));
  ASSERT_TRUE(from_hex(event_hex, &eh, sizeof eh));
  const int tell_parent = std::atoi(fd_var);
  init_device0();
  ipc_event_api api;
  ASSERT_TRUE(api.complete());
  void* p = nullptr;
  ASSERT_EQ(cudaSuccess, cudaIpcOpenMemHandle(&p, mh, cudaIpcMemLazyEnablePeerAccess));
  CUevent ev = nullptr;
  ASSERT_EQ(CUDA_SUCCESS, api.open(&ev, eh));
  // The parent's gate holds its record back: the event is not complete.
  EXPECT_EQ(CUDA_ERROR_NOT_READY, api.query(ev));
  auto t = make_stream(cudaStreamNonBlocking);
  auto out = pinned_alloc(ipc_bytes);
  std::memset(out.get(), 0x5a, ipc_bytes);
  ASSERT_EQ(CUDA_SUCCESS, api.wait(reinterpret_cast<CUstream>(t.get()), ev, 0));
  ASSERT_EQ(cudaSuccess, cudaMemcpyAsync(out.get(), p, ipc_bytes, cudaMemcpyDeviceToHost, t.get()));
  EXPECT_TRUE(stays_not_ready(t.get()));
  ASSERT_EQ(1, write(tell_parent, "w", 1));
  ASSERT_EQ(cudaSuccess, cudaStreamSynchronize(t.get()));
  EXPECT_TRUE(all_bytes_are(out.get(), parent_bytes, ipc_bytes)) << "the copy ran before the parent's record";
  EXPECT_EQ(CUDA_SUCCESS, api.query(ev));
  EXPECT_EQ(cudaSuccess, cudaEventDestroy(reinterpret_cast<cudaEvent_t>(ev)));
  EXPECT_EQ(cudaSuccess, cudaIpcCloseMemHandle(p));
}

TEST(IpcEvent, HandleOfAnEventWithoutTheInterprocessFlagIsRefused) {
  init_device0();
  ipc_event_api api;
  ASSERT_TRUE(api.complete());
  auto ev = make_event(cudaEventDisableTiming);
  CUipcEventHandle eh{};
  // The code is the simulator's (UNV: a GPU run prints what real CUDA answers).
  const CUresult r = api.get(&eh, reinterpret_cast<CUevent>(ev.get()));
  EXPECT_NE(CUDA_SUCCESS, r);
  if (!on_simulator()) std::printf("real CUDA: cuIpcGetEventHandle of a local event: %d\n", static_cast<int>(r));
  clear_last_error();
}

// ---- VMM ------------------------------------------------------------------------------------------

struct vmm_api {
  PFN_cuMemGetAllocationGranularity_v10020 granularity =
      driver_fn<PFN_cuMemGetAllocationGranularity_v10020>("cuMemGetAllocationGranularity");
  PFN_cuMemCreate_v10020 create = driver_fn<PFN_cuMemCreate_v10020>("cuMemCreate");
  PFN_cuMemRelease_v10020 release = driver_fn<PFN_cuMemRelease_v10020>("cuMemRelease");
  PFN_cuMemAddressReserve_v10020 reserve = driver_fn<PFN_cuMemAddressReserve_v10020>("cuMemAddressReserve");
  PFN_cuMemAddressFree_v10020 address_free = driver_fn<PFN_cuMemAddressFree_v10020>("cuMemAddressFree");
  PFN_cuMemMap_v10020 map = driver_fn<PFN_cuMemMap_v10020>("cuMemMap");
  PFN_cuMemUnmap_v10020 unmap = driver_fn<PFN_cuMemUnmap_v10020>("cuMemUnmap");
  PFN_cuMemSetAccess_v10020 set_access = driver_fn<PFN_cuMemSetAccess_v10020>("cuMemSetAccess");
  PFN_cuMemExportToShareableHandle_v10020 export_handle =
      driver_fn<PFN_cuMemExportToShareableHandle_v10020>("cuMemExportToShareableHandle");
  PFN_cuMemImportFromShareableHandle_v10020 import_handle =
      driver_fn<PFN_cuMemImportFromShareableHandle_v10020>("cuMemImportFromShareableHandle");
  PFN_cuIpcGetMemHandle_v4010 ipc_get = driver_fn<PFN_cuIpcGetMemHandle_v4010>("cuIpcGetMemHandle");
  PFN_cuPointerGetAttribute_v4000 get_attr = driver_fn<PFN_cuPointerGetAttribute_v4000>("cuPointerGetAttribute");

  bool complete() const {
    return granularity && create && release && reserve && address_free && map && unmap && set_access && export_handle &&
           import_handle && ipc_get && get_attr;
  }
};

CUmemAllocationProp device0_prop(CUmemAllocationHandleType handles) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requestedHandleTypes = handles;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  return prop;
}
CUmemAccessDesc device0_rw() {
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = 0;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return access;
}
bool is_power_of_two(std::size_t v) { return v != 0 && (v & (v - 1)) == 0; }
void* as_ptr(CUdeviceptr va) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(va)); }

// A handle mapped read-write into a fresh reservation of this process; undone in reverse order.
class vmm_mapping {
 public:
  vmm_mapping(const vmm_api& api, CUmemGenericAllocationHandle h, std::size_t size, bool access)
      : api_(api), size_(size) {
    EXPECT_EQ(CUDA_SUCCESS, api_.reserve(&va_, size_, 0, 0, 0));
    if (va_ == 0) return;
    mapped_ = api_.map(va_, size_, 0, h, 0) == CUDA_SUCCESS;
    EXPECT_TRUE(mapped_);
    if (mapped_ && access) {
      CUmemAccessDesc rw = device0_rw();
      EXPECT_EQ(CUDA_SUCCESS, api_.set_access(va_, size_, &rw, 1));
    }
  }
  vmm_mapping(const vmm_mapping&) = delete;
  vmm_mapping& operator=(const vmm_mapping&) = delete;
  ~vmm_mapping() {
    if (mapped_) {
      EXPECT_EQ(CUDA_SUCCESS, api_.unmap(va_, size_));
    }
    if (va_ != 0) {
      EXPECT_EQ(CUDA_SUCCESS, api_.address_free(va_, size_));
    }
  }
  CUdeviceptr va() const { return va_; }
  void* ptr() const { return as_ptr(va_); }
  bool ok() const { return va_ != 0 && mapped_; }

 private:
  const vmm_api& api_;
  std::size_t size_;
  CUdeviceptr va_ = 0;
  bool mapped_ = false;
};

class Vmm : public ::testing::Test {
 protected:
  void SetUp() override {
    init_device0();
    ASSERT_TRUE(api_.complete()) << "a VMM driver entry point is missing";
    CUmemAllocationProp prop = device0_prop(CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    ASSERT_EQ(CUDA_SUCCESS, api_.granularity(&gran_, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  }
  CUmemGenericAllocationHandle create(std::size_t size) {
    CUmemAllocationProp prop = device0_prop(CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    CUmemGenericAllocationHandle h = 0;
    EXPECT_EQ(CUDA_SUCCESS, api_.create(&h, size, &prop, 0));
    return h;
  }
  vmm_api api_;
  std::size_t gran_ = 0;
};

TEST_F(Vmm, AllocationGranularityIsAPowerOfTwo) {
  EXPECT_TRUE(is_power_of_two(gran_)) << gran_;
  CUmemAllocationProp prop = device0_prop(CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  std::size_t recommended = 0;
  ASSERT_EQ(CUDA_SUCCESS, api_.granularity(&recommended, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  EXPECT_TRUE(is_power_of_two(recommended)) << recommended;
  EXPECT_EQ(0u, recommended % gran_);
  if (on_simulator()) {
    EXPECT_EQ(std::size_t{2} << 20, gran_) << "the simulator's granularity is 2 MiB";
  }
}

TEST_F(Vmm, CreateWithASizeThatIsNotAGranularityMultipleIsInvalidValue) {
  CUmemAllocationProp prop = device0_prop(CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  CUmemGenericAllocationHandle h = 0;
  EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, api_.create(&h, gran_ + 4096, &prop, 0));
}

TEST_F(Vmm, MappedMemoryIsUsableByCopiesAfterSetAccess) {
  CUmemGenericAllocationHandle h = create(gran_);
  ASSERT_NE(0u, h);
  {
    vmm_mapping m(api_, h, gran_, true);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(0u, m.va() % gran_);
    fill_device(m.ptr(), 0x5b, gran_);
    EXPECT_TRUE(device_bytes_are(m.ptr(), 0x5b, gran_));
    cudaPointerAttributes a{};
    ASSERT_EQ(cudaSuccess, cudaPointerGetAttributes(&a, static_cast<char*>(m.ptr()) + 100));
    EXPECT_EQ(cudaMemoryTypeDevice, a.type);
    EXPECT_EQ(0, a.device);
  }
  EXPECT_EQ(CUDA_SUCCESS, api_.release(h));
}

TEST_F(Vmm, LegacyIpcOfVmmMemoryIsRefused) {
  CUmemGenericAllocationHandle h = create(gran_);
  ASSERT_NE(0u, h);
  {
    vmm_mapping m(api_, h, gran_, true);
    ASSERT_TRUE(m.ok());
    int capable = 0;  // "a boolean": the driver may write one byte only
    ASSERT_EQ(CUDA_SUCCESS, api_.get_attr(&capable, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, m.va()));
    EXPECT_EQ(0, capable);
    // No legacy IPC on cuMemCreate memory (NVIDIA, "Introducing Low-Level GPU Virtual Memory
    // Management"). The exact code is UNV; INVALID_VALUE is the simulator's and a GPU run verifies.
    CUipcMemHandle ih{};
    EXPECT_EQ(CUDA_ERROR_INVALID_VALUE, api_.ipc_get(&ih, m.va()));
    clear_last_error();
    cudaIpcMemHandle_t rh{};
    EXPECT_EQ(cudaErrorInvalidValue, cudaIpcGetMemHandle(&rh, m.ptr()));
    clear_last_error();
  }
  EXPECT_EQ(CUDA_SUCCESS, api_.release(h));
}

TEST_F(Vmm, ExportedHandleImportedInAnotherProcessSharesTheBytesBothWays) {
  CUmemGenericAllocationHandle h = create(gran_);
  ASSERT_NE(0u, h);
  {
    vmm_mapping m(api_, h, gran_, true);
    ASSERT_TRUE(m.ok());
    fill_device(m.ptr(), parent_bytes, gran_);

    int fd = -1;
    ASSERT_EQ(CUDA_SUCCESS, api_.export_handle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    ASSERT_GE(fd, 0);
    int sv[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    // The descriptor waits in the socket until the child receives it.
    EXPECT_TRUE(send_fd(sv[0], fd));
    close(fd);  // the exporter's copy; the one in flight keeps the memory shareable
    const std::string child = "VmmChild.ImportsTheParentsHandleMapsItAndWritesAReply";
    auto r = run_child_test(child, {std::string(vmm_size_env) + "=" + std::to_string(gran_)}, sv[1]);
    close(sv[0]);
    close(sv[1]);
    EXPECT_TRUE(r.passed(child)) << "exit " << r.exit_code << " signal " << r.term_signal << "\n" << r.output;
    EXPECT_TRUE(device_bytes_are(m.ptr(), child_bytes, gran_)) << "the child's writes are lost";
  }
  EXPECT_EQ(CUDA_SUCCESS, api_.release(h));
}

TEST(VmmChild, ImportsTheParentsHandleMapsItAndWritesAReply) {
  const char* fd_var = parent_env(inherited_fd_env);
  const char* size_var = parent_env(vmm_size_env);
  if (fd_var == nullptr || size_var == nullptr) {
    GTEST_SKIP() << "runs as the child of Vmm.ExportedHandleImportedInAnotherProcess...";
  }
  const std::size_t size = std::strtoull(size_var, nullptr, 10);
  const int fd = recv_fd(std::atoi(fd_var));
  ASSERT_GE(fd, 0) << "no descriptor arrived";
  init_device0();
  vmm_api api;
  ASSERT_TRUE(api.complete());
  CUmemGenericAllocationHandle h = 0;
  // The descriptor is passed by value, cast to a pointer; the importer closes it.
  ASSERT_EQ(CUDA_SUCCESS, api.import_handle(&h, reinterpret_cast<void*>(static_cast<std::uintptr_t>(fd)),
                                            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
  close(fd);
  {
    vmm_mapping m(api, h, size, true);
    ASSERT_TRUE(m.ok());
    EXPECT_TRUE(device_bytes_are(m.ptr(), parent_bytes, size));
    fill_device(m.ptr(), child_bytes, size);
    EXPECT_TRUE(device_bytes_are(m.ptr(), child_bytes, size));
  }
  {
    // A second mapping of the same handle has no access until cuMemSetAccess: a copy into it
    // fails (the simulator answers InvalidValue, as for any invalid device range; the code a GPU
    // gives is verified by a GPU run). Kept last: a GPU might answer with a sticky fault.
    vmm_mapping m(api, h, size, false);
    ASSERT_TRUE(m.ok());
    clear_last_error();
    std::string junk(4096, '\x11');
    EXPECT_EQ(cudaErrorInvalidValue, cudaMemcpy(m.ptr(), junk.data(), junk.size(), cudaMemcpyHostToDevice));
    clear_last_error();
  }
  EXPECT_EQ(CUDA_SUCCESS, api.release(h));
}

}  // namespace
}  // namespace conformance

// The shim's daemon client (shim/source/daemon_client.h) against poolshimd's event loop run
// in-process (daemon/poolshimd/server.h): a connection the daemon closes for holding nothing past
// its idle timeout (issue #13, finding 5) is made again at once, not taken for a lost daemon (no
// pause on local slabs), and a client that holds slabs is never closed for being idle. One socket
// per test program: the shim reads POOLSHIM_SOCKET once, so every test here shares one daemon.
#include "source/daemon_client.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "poolshimd/server.h"

namespace poolshim {
namespace {

constexpr std::uint64_t kSlab = std::uint64_t{2} << 20;
constexpr std::chrono::seconds kIdle{1};

class DaemonClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/poolshim-client-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);  // mode 0700, ours: a directory the shim trusts
    dir_ = new std::string(tmpl);
    const std::string sock = *dir_ + "/poolshimd.sock";
    setenv("POOLSHIM_SOCKET", sock.c_str(), 1);  // before the shim's configuration is first read
    daemon::server_options o;
    o.socket_path = sock;
    o.region.slab_bytes = kSlab;
    o.region.total_bytes = 8 * kSlab;
    o.region.fill_threads = 1;
    o.idle_timeout = kIdle;
    server_ = new daemon::server(o);
    thread_ = new std::thread([] { server_->run(); });
  }
  static void TearDownTestSuite() {
    server_->stop();
    thread_->join();
    delete thread_;
    delete server_;
    std::error_code ignored;  // the daemon's identity key (poolshimd.key) stays beside its socket
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
  }
  static daemon_client::figures figures() { return daemon_client::get_figures(); }

  static std::string* dir_;
  static daemon::server* server_;
  static std::thread* thread_;
};
std::string* DaemonClient::dir_ = nullptr;
daemon::server* DaemonClient::server_ = nullptr;
std::thread* DaemonClient::thread_ = nullptr;

TEST_F(DaemonClient, ConnectionClosedForIdlenessIsMadeAgainAtOnce) {
  daemon_client::slab_lease l{};
  ASSERT_TRUE(daemon_client::lease_slab(kSlab, &l)) << "no lease from the test daemon";
  daemon_client::return_slab(l);
  const daemon_client::figures before = figures();
  // Past the daemon's idle timeout (its sweep runs every 250 ms): the connection holds nothing, so
  // the daemon closes it.
  std::this_thread::sleep_for(kIdle + std::chrono::milliseconds(900));
  daemon_client::slab_lease again{-1, 0, 0};
  EXPECT_TRUE(daemon_client::lease_slab(kSlab, &again))
      << "the lease after the daemon closed the idle connection was not served by the daemon";
  const daemon_client::figures after = figures();
  EXPECT_EQ(after.connects, before.connects + 1) << "the connection was not made again";
  EXPECT_EQ(after.fallbacks, before.fallbacks) << "a local slab instead of the daemon's";
  if (again.fd >= 0) daemon_client::return_slab(again);
}

TEST_F(DaemonClient, ConnectionHoldingASlabIsNotClosedForIdleness) {
  daemon_client::slab_lease l{};
  ASSERT_TRUE(daemon_client::lease_slab(kSlab, &l));
  const daemon_client::figures before = figures();
  std::this_thread::sleep_for(kIdle + std::chrono::milliseconds(900));
  daemon_client::slab_lease second{-1, 0, 0};
  EXPECT_TRUE(daemon_client::lease_slab(kSlab, &second));
  EXPECT_EQ(figures().connects, before.connects) << "a connection holding a lease was closed";
  daemon_client::return_slab(l);
  if (second.fd >= 0) daemon_client::return_slab(second);
}

}  // namespace
}  // namespace poolshim

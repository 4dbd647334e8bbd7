// libpoolshim.so's ELF constructor and destructor. The constructor may run after other libraries'
// constructors have already called CUDA (init order is dependencies first), so nothing may depend
// on it having run: it only warms what the core would otherwise resolve on first use.
#include "dispatch/lifecycle.h"

namespace {

[[gnu::constructor]] void poolshim_on_load() { poolshim::dispatch::on_load(); }

// Runs after the program's atexit handlers and static destructors: write(2) only.
[[gnu::destructor]] void poolshim_on_unload() { poolshim::dispatch::on_unload(); }

}  // namespace

// Reads the shim's configuration table (include/poolshim/config.h) from POOLSHIM_* variables
// through the shared machinery (include/poolshim/options.h). Runs inside other people's processes,
// possibly before main: no allocation, no stdio, no locale.
#include "poolshim/config.h"

namespace poolshim {

config read_config(void (*on_issue)(const config_issue&)) noexcept { return opt::read<config>(on_issue); }

}  // namespace poolshim

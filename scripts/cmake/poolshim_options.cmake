# Compiler settings shared by every poolshim target: warnings, sanitizers and the portable-bundle
# runtime linkage. Targets opt in with target_link_libraries(... poolshim::warnings ...).

add_library(poolshim_warnings INTERFACE)
add_library(poolshim::warnings ALIAS poolshim_warnings)
target_compile_options(poolshim_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Werror -Wno-missing-field-initializers>)

# Sanitizers apply to everything that is not preloaded into other people's processes: a
# sanitizer runtime cannot be LD_PRELOADed into an uninstrumented program.
add_library(poolshim_sanitize INTERFACE)
add_library(poolshim::sanitize ALIAS poolshim_sanitize)
if(POOLSHIM_SANITIZE STREQUAL "address")
  set(_poolshim_san_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(POOLSHIM_SANITIZE STREQUAL "thread")
  set(_poolshim_san_flags -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT POOLSHIM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "POOLSHIM_SANITIZE must be 'address', 'thread' or empty, not '${POOLSHIM_SANITIZE}'")
endif()
if(_poolshim_san_flags)
  target_compile_options(poolshim_sanitize INTERFACE $<$<COMPILE_LANGUAGE:C,CXX>:${_poolshim_san_flags}>)
  target_link_options(poolshim_sanitize INTERFACE ${_poolshim_san_flags})
endif()

# --no-undefined on the shared libraries (the simulator's, the call logger): every symbol they use
# must come from a library they name. Clang's sanitizers put their runtime in the executable only,
# so a sanitized library built by clang leaves the runtime's symbols to it: such a build links its
# libraries without the flag (the unsanitized builds still check).
set(POOLSHIM_LINK_NO_UNDEFINED "LINKER:--no-undefined")
if(_poolshim_san_flags AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(POOLSHIM_LINK_NO_UNDEFINED "")
endif()

# A portable build links the C++ runtime statically so the bundle runs on a machine that has only
# the NVIDIA driver and the CUDA runtime (another distribution's libstdc++ may be older).
add_library(poolshim_runtime_linkage INTERFACE)
add_library(poolshim::runtime_linkage ALIAS poolshim_runtime_linkage)
if(POOLSHIM_PORTABLE)
  target_link_options(poolshim_runtime_linkage INTERFACE -static-libstdc++ -static-libgcc)
endif()

# `cmake --install` and the Debian package (`cpack -G DEB` in the build folder), one layout:
#
#   bin/                      poolshim (the launcher), poolshimd, poolshim-stats
#   lib/poolshim/             libpoolshim.so and what it dlopens beside itself (libunwind.so.8):
#                             private, not on the loader's path, preloaded by its full path
#   lib/                      libpoolshim_buffers.so (named buffers, for programs that link it)
#   lib/python3/dist-packages/poolshim   the Python package (POOLSHIM_INSTALL_PYTHONDIR)
#   lib/systemd/system/       poolshimd.service (systemd reads /usr and /usr/local's)
#   include/poolshim/         the public headers, version.h included
#   share/poolshim/           VERSION, systemd/ (the unit), kubernetes/, grafana/
#   share/man/man1/           a page per program, made by help2man from its --help and --version
#
# Nothing needs an environment variable: the programs link only system libraries, the shim finds
# libunwind beside itself ($ORIGIN of its own path), the launcher finds the shim and the daemon
# from its own path, the Python package finds libpoolshim_buffers.so three folders up.
# The tests are tests/deploy (ctest -L deploy).
if(POOLSHIM_SANITIZE OR NOT TARGET poolshim)
  return()  # a sanitizer build has no shim to install
endif()

set(POOLSHIM_INSTALL_PYTHONDIR "lib/python3/dist-packages" CACHE STRING
    "Where the Python package goes, relative to the prefix (Debian's python3 reads /usr/lib/python3/dist-packages)")

install(TARGETS poolshimd poolshim-stats RUNTIME DESTINATION bin)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/poolshim DESTINATION bin)
install(TARGETS poolshim LIBRARY DESTINATION lib/poolshim)
install(TARGETS poolshim_buffers LIBRARY DESTINATION lib)

# The shim's stack unwinder: Debian's libunwind.so.8, loaded RTLD_LOCAL from beside the shim
# (shim/stats/unwinder.cpp), so its unversioned _Unwind_* never reach the program's symbol scope.
find_library(POOLSHIM_LIBUNWIND_SO NAMES libunwind.so.8 DOC "libunwind installed beside the shim")
if(POOLSHIM_LIBUNWIND_SO)
  get_filename_component(_poolshim_unwind_real "${POOLSHIM_LIBUNWIND_SO}" REALPATH)
  install(FILES ${_poolshim_unwind_real} DESTINATION lib/poolshim RENAME libunwind.so.8)
else()
  message(WARNING "libunwind.so.8 not found: the installed shim records call sites only where the "
                  "system has one (Debian: libunwind8)")
endif()

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/poolshim DESTINATION include FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/poolshim/version.h DESTINATION include/poolshim)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/daemon/buffers/python/poolshim DESTINATION ${POOLSHIM_INSTALL_PYTHONDIR}
        FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)

file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/deploy/VERSION CONTENT "@PROJECT_VERSION@\n" @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/deploy/VERSION DESTINATION share/poolshim)
install(FILES ${PROJECT_SOURCE_DIR}/scripts/deploy/kubernetes/poolshimd.yaml
              ${PROJECT_SOURCE_DIR}/scripts/deploy/kubernetes/workload-pod.yaml
        DESTINATION share/poolshim/kubernetes)
install(FILES ${PROJECT_SOURCE_DIR}/scripts/deploy/grafana/poolshimd-dashboard.json DESTINATION share/poolshim/grafana)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/poolshim)

# The unit names the daemon by the prefix it is installed under, known only at install time
# (cmake --install --prefix, or cpack's /usr): written then, into both places.
install(CODE "
  set(_unit_bindir \"\${CMAKE_INSTALL_PREFIX}/bin\")
  file(READ \"${PROJECT_SOURCE_DIR}/scripts/deploy/systemd/poolshimd.service.in\" _unit)
  string(REPLACE \"@BINDIR@\" \"\${_unit_bindir}\" _unit \"\${_unit}\")
  foreach(_dir share/poolshim/systemd lib/systemd/system)
    set(_to \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/\${_dir}/poolshimd.service\")
    message(STATUS \"Installing: \${_to}\")
    file(WRITE \"\${_to}\" \"\${_unit}\")
  endforeach()
")

# Man pages from each program's --help and --version (help2man, Debian's help2man), gzipped as
# Debian's policy wants them. Without help2man there are none, and the build says so.
find_program(POOLSHIM_HELP2MAN help2man)
if(POOLSHIM_HELP2MAN)
  set(_poolshim_man_pages "")
  foreach(spec IN ITEMS "poolshimd|$<TARGET_FILE:poolshimd>|node-local GPU memory daemon of poolshim"
                        "poolshim-stats|$<TARGET_FILE:poolshim-stats>|report poolshim's per-call-site statistics"
                        "poolshim|${PROJECT_SOURCE_DIR}/scripts/poolshim|run a program with poolshim's CUDA allocation shim")
    string(REPLACE "|" ";" spec "${spec}")
    list(GET spec 0 name)
    list(GET spec 1 program)
    list(GET spec 2 summary)
    set(page ${PROJECT_BINARY_DIR}/man/${name}.1)
    add_custom_command(OUTPUT ${page}.gz
      COMMAND ${POOLSHIM_HELP2MAN} --no-info --no-discard-stderr --section 1 --name ${summary} --output ${page}
              ${program}
      COMMAND gzip -9nf ${page}
      DEPENDS ${program} poolshimd poolshim-stats ${PROJECT_SOURCE_DIR}/CMakeLists.txt
      COMMENT "Man page ${name}(1) from its --help"
      VERBATIM)
    list(APPEND _poolshim_man_pages ${page}.gz)
  endforeach()
  add_custom_target(poolshim_man_pages ALL DEPENDS ${_poolshim_man_pages})
  install(FILES ${_poolshim_man_pages} DESTINATION share/man/man1)
else()
  message(WARNING "help2man not found (Debian: help2man): no man pages are installed")
endif()

# ---- the Debian package (cpack -G DEB) --------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME poolshim)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR poolshim)
set(CPACK_PACKAGE_CONTACT "poolshim maintainers <poolshim@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "cheap, shared and visible GPU memory for unmodified CUDA programs")
set(CPACK_PACKAGE_DESCRIPTION
    "An LD_PRELOAD shim that serves a CUDA program's allocations from a caching pool (libpoolshim.so), "
    "a node-local daemon that lends pinned host and device memory and takes it back when a process "
    "dies (poolshimd, with a systemd unit and a metrics page), and a per-call-site statistics tool "
    "(poolshim-stats). Kubernetes manifests and a Grafana dashboard are in /usr/share/poolshim.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: what dpkg-shlibdeps finds the ELF files need, and passwd for the maintainer scripts'
# groupadd/groupdel. The CUDA driver is NVIDIA's, never a Debian dependency (dlopened at run time).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3, python3-numpy")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus")
set(_poolshim_debian ${PROJECT_SOURCE_DIR}/scripts/deploy/debian)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${_poolshim_debian}/postinst ${_poolshim_debian}/prerm ${_poolshim_debian}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)

# poolshimd's event loop must never be held by a client (issue #13, findings 1, 4 and 5): each test
# starts its own daemon on a private socket, attacks it (daemon_loop_attack.py, python3 stdlib) and
# measures `poolshimd --status` meanwhile (p99), the daemon's descriptors and RSS before and after.
#   f1_linger_socket_close    records carrying TCP sockets with a full send queue and a 30 s linger
#   f4_metrics_slow_clients   slow metrics connections, ~50 a second
#   f5_idle_connection_flood  1,130 idle connections (as nobody when root) under `ulimit -n 1024`
#   named_buffer_fill         256 MiB named buffers created, unlinked and closed in a loop (issue #14):
#                             their fill must not hold the loop (--status p99 under 300 ms)
find_package(Python3 COMPONENTS Interpreter QUIET)
if(NOT Python3_Interpreter_FOUND)
  message(STATUS "poolshim: no python3: the daemon loop security tests are not registered")
  return()
endif()
foreach(_finding IN ITEMS f1_linger_socket_close f4_metrics_slow_clients f5_idle_connection_flood named_buffer_fill)
  poolshim_add_sim_test(security.daemon.${_finding}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/daemon_loop_attack.py ${_finding}
            --daemon $<TARGET_FILE:poolshimd>
    LABELS integration daemon security TIMEOUT 60)
  set_tests_properties(security.daemon.${_finding} PROPERTIES FAIL_REGULAR_EXPRESSION "FAIL:")
endforeach()

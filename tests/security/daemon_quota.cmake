# poolshimd's quotas and per-client detail against a hostile local user (issue #13, findings 2, 3,
# 8, 12, 13, 14): quota_attack.py (python3 stdlib; it imports daemon_loop_attack.py's Daemon), each
# scenario against a daemon of its own on a private socket.
#   f2_keep_returned_slabs   lease, keep the memfd, return, again: memory beyond the uid quota
#   f2_keep_named_buffers    create a named buffer, keep the memfd, unlink, close, again (#14)
#   f3_redeclare_any_memfd   memfds no daemon lent, and a returned slab, re-declared
#   f8_quota_per_connection  one process, four connections, one client quota
#   f12_client_detail        another uid's view of client_stats and the metrics page (root; 77 else)
#   f13_ipc_register_flood   200,000 IPC registrations from one client
#   f14_device_quota         a CUDA program's device memory from the daemon under a client quota
#   f17_trim_other_uid       trim_clients of another uid reaches none of root's clients (#17; root)
find_package(Python3 COMPONENTS Interpreter QUIET)
if(NOT Python3_Interpreter_FOUND)
  message(STATUS "poolshim: no python3: the daemon quota security tests are not registered")
  return()
endif()
foreach(_finding IN ITEMS f2_keep_returned_slabs f2_keep_named_buffers f3_redeclare_any_memfd f8_quota_per_connection f12_client_detail
                          f13_ipc_register_flood f14_device_quota f17_trim_other_uid)
  poolshim_add_sim_test(security.daemon.${_finding}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/quota_attack.py ${_finding}
            --daemon $<TARGET_FILE:poolshimd> --client $<TARGET_FILE:daemon_client_program>
            --shim $<TARGET_FILE:poolshim>
    LABELS integration daemon security TIMEOUT 90 ENV PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(security.daemon.${_finding} PROPERTIES FAIL_REGULAR_EXPRESSION "FAIL:" SKIP_RETURN_CODE 77)
endforeach()

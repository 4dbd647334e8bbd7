# The launcher (scripts/poolshim) and the shim's daemon client (issue #13, findings 6, 15 and 9).
# The launcher's tests run it under a private fake TMPDIR, HOME and XDG_RUNTIME_DIR (never the real
# /tmp/poolshim-$UID) on the simulator, and stop the daemons it started by their pids.
#   f6_log_symlink_fifo      links and FIFOs planted where the daemon's log goes receive nothing
#   f15_squatted_socket_dir  a socket directory of another uid (root: chown 65534) or a link in its
#                            place: one line says so, a fresh private directory serves, a later run
#                            finds its daemon (77, skipped, when not root: the link part still runs)
#   f9_prompt_redeclare      an idle client re-declares its slabs to a restarted daemon within 5 s
set(_launcher_args --launcher ${PROJECT_SOURCE_DIR}/scripts/poolshim --build-dir ${CMAKE_BINARY_DIR}
                   --daemon $<TARGET_FILE:poolshimd> --shim $<TARGET_FILE:poolshim>
                   --client $<TARGET_FILE:daemon_client_program>)
foreach(_finding IN ITEMS f6_log_symlink_fifo f15_squatted_socket_dir)
  poolshim_add_sim_test(security.launcher.${_finding}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/${_finding}.sh ${_launcher_args}
    LABELS integration daemon security TIMEOUT 120)
  set_tests_properties(security.launcher.${_finding} PROPERTIES SKIP_RETURN_CODE 77 FAIL_REGULAR_EXPRESSION "FAIL:")
endforeach()
poolshim_add_sim_test(security.daemon.f9_prompt_redeclare
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/f9_prompt_redeclare.sh --daemon $<TARGET_FILE:poolshimd>
          --client $<TARGET_FILE:daemon_client_program> --shim $<TARGET_FILE:poolshim>
  LABELS integration daemon security TIMEOUT 120)
set_tests_properties(security.daemon.f9_prompt_redeclare PROPERTIES FAIL_REGULAR_EXPRESSION "FAIL:")

# poolshim-stats against a hostile stats file (issue #13, findings 7, 10 and 11;
# stats_hostile_test.py): files a hostile owner could leave (stats_hostile_file writes them, laid
# out as the shim lays them out) must give a clear error or a report, never an abort, a signal, a
# memory blow-up or terminal escapes on the screen.
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_Interpreter_FOUND)
  return()
endif()
add_executable(stats_hostile_file ${CMAKE_CURRENT_SOURCE_DIR}/stats_hostile_file.cpp)
target_link_libraries(stats_hostile_file PRIVATE poolshim::headers poolshim::warnings)
foreach(_finding IN ITEMS f7_hostile_counts f10_truncated_while_read f11_terminal_escapes)
  string(REGEX REPLACE "_.*" "" _scenario ${_finding})
  add_test(NAME security.stats.${_finding}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/stats_hostile_test.py ${_scenario}
                   --tool $<TARGET_FILE:poolshim-stats> --gen $<TARGET_FILE:stats_hostile_file>)
  set_tests_properties(security.stats.${_finding} PROPERTIES LABELS "integration;stats;security" TIMEOUT 60
                                                             FAIL_REGULAR_EXPRESSION "FAIL:")
endforeach()

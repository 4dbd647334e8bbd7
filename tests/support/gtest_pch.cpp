// The translation unit that GoogleTest's shared precompiled header is built with
// (poolshim_gtest_pch in tests/CMakeLists.txt); it has no code of its own.

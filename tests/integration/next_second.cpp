// Second definition of the symbol next_first.cpp looks up with RTLD_NEXT.
extern "C" __attribute__((visibility("default"))) const char* poolshim_test_next_symbol() { return "second"; }
extern "C" __attribute__((visibility("default"))) const char* poolshim_test_second_name() { return "second"; }

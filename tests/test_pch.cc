// The source of gatehouse_test_pch (tests/CMakeLists.txt): its precompiled
// header is what every test reuses; this file only makes CMake build it.

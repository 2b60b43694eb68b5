# The fuzz harnesses (fuzz/) as tests: where clang++, libFuzzer and lld are found, the main build
# configures and builds them with clang in BUILD/fuzz-build (only the parser sources, ASan + UBSan),
# and ctest runs each for TROUPE_FUZZ_SECONDS on a copy of its committed corpus (label `fuzz`; a crash,
# a sanitizer report, a leak or a hang fails the test and keeps the input in BUILD/fuzz-artifacts).
option(TROUPE_FUZZ_TESTS "Build the fuzz harnesses with clang and run each for a bounded time under ctest" ON)
set(TROUPE_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzz harness runs under ctest")
if(NOT TROUPE_FUZZ_TESTS)
  return()
endif()

find_program(TROUPE_CLANGXX NAMES clang++ clang++-14)
find_program(TROUPE_CLANG NAMES clang clang-14)
find_program(TROUPE_LLD NAMES ld.lld ld.lld-14)
if(TROUPE_CLANGXX)
  execute_process(COMMAND ${TROUPE_CLANGXX} -print-file-name=libclang_rt.fuzzer-x86_64.a
                  OUTPUT_VARIABLE troupe_libfuzzer OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(NOT TROUPE_CLANGXX OR NOT TROUPE_CLANG OR NOT TROUPE_LLD OR NOT IS_ABSOLUTE "${troupe_libfuzzer}"
   OR NOT EXISTS "${troupe_libfuzzer}")
  message(STATUS "clang, libFuzzer (libclang-rt-14-dev) or lld not found: the fuzz tests are not built "
                 "(run deploy/install-deps.sh)")
  return()
endif()

include(ExternalProject)
set(troupe_fuzz_dir ${PROJECT_BINARY_DIR}/fuzz-build)
ExternalProject_Add(troupe_fuzz_build
  SOURCE_DIR ${PROJECT_SOURCE_DIR}
  BINARY_DIR ${troupe_fuzz_dir}
  CMAKE_ARGS -DCMAKE_CXX_COMPILER=${TROUPE_CLANGXX} -DCMAKE_C_COMPILER=${TROUPE_CLANG} -DTROUPE_FUZZ=ON
             -DTROUPE_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON)  # its own build tool decides what is out of date

file(GLOB troupe_fuzz_harnesses CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/fuzz/*.fuzz.cpp)
foreach(h ${troupe_fuzz_harnesses})
  get_filename_component(name ${h} NAME_WE)
  add_test(NAME fuzz_${name}
           COMMAND bash ${PROJECT_SOURCE_DIR}/fuzz/run.sh ${troupe_fuzz_dir}/bin/fuzz_${name}
                   ${PROJECT_SOURCE_DIR}/fuzz/corpus/${name} ${TROUPE_FUZZ_SECONDS} ${PROJECT_BINARY_DIR}/fuzz-artifacts
                   ${troupe_fuzz_dir}/corpus/${name}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  math(EXPR troupe_fuzz_timeout "${TROUPE_FUZZ_SECONDS} + 120")
  set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz TIMEOUT ${troupe_fuzz_timeout})
endforeach()

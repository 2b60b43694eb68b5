# troupe_add_tests(NAME DIR LIBS...): one test binary per module, from every *.test.cpp under DIR.
# Tests run from the source tree so that ../shared (models, golden files) resolves beside the checkout.
function(troupe_add_tests name dir)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${dir}/*.test.cpp)
  if(NOT srcs)
    return()
  endif()
  add_executable(${name} ${srcs})
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    TROUPE_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
    TROUPE_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  include(GoogleTest)
  # A GTEST_SKIP (no GPU, no Node.js) shows as skipped in ctest, never as passed.
  gtest_discover_tests(${name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${name}" SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endfunction()

# troupe_add_tests(NAME DIR LIBS... [ONLY REGEX] [EXCLUDE REGEX] [LABELS L...]): one test binary per
# module, from every *.test.cpp under DIR (those whose path matches ONLY, none that match EXCLUDE). Its
# tests carry the ctest label NAME plus any LABELS (`gpu` for tests that need a GPU).
# Tests run from the source tree so that ../shared (models, golden files) resolves beside the checkout.
function(troupe_add_tests name dir)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "ONLY;EXCLUDE" "LABELS")
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${dir}/*.test.cpp)
  if(arg_ONLY)
    list(FILTER srcs INCLUDE REGEX "${arg_ONLY}")
  endif()
  if(arg_EXCLUDE)
    list(FILTER srcs EXCLUDE REGEX "${arg_EXCLUDE}")
  endif()
  if(NOT srcs)
    return()
  endif()
  add_executable(${name} ${srcs})
  target_link_libraries(${name} PRIVATE ${arg_UNPARSED_ARGUMENTS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    TROUPE_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
    TROUPE_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  include(GoogleTest)
  # A GTEST_SKIP (no GPU, no Node.js) shows as skipped in ctest, never as passed.
  gtest_discover_tests(${name} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${name}" SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
  if(arg_LABELS)
    # gtest_discover_tests flattens a list-valued property into separate arguments, so more than one
    # label is set by a script ctest includes after the discovered tests (listed in NAME_TESTS).
    set(labels ${name} ${arg_LABELS})
    set(script ${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake)
    file(WRITE ${script} "if(DEFINED ${name}_TESTS)\n  set_tests_properties(\${${name}_TESTS} PROPERTIES LABELS \"${labels}\")\nendif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${script})
  endif()
endfunction()

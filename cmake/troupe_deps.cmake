# Third-party dependencies, all from Debian bookworm packages (deploy/install-deps.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)

# CAF 0.17 ships no CMake config on Debian: find the headers and libraries and make imported targets.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(CAF_INCLUDE_DIR AND CAF_CORE_LIBRARY AND CAF_IO_LIBRARY)
  add_library(caf::core UNKNOWN IMPORTED)
  set_target_properties(caf::core PROPERTIES IMPORTED_LOCATION ${CAF_CORE_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR}
                        INTERFACE_LINK_LIBRARIES Threads::Threads)
  add_library(caf::io UNKNOWN IMPORTED)
  set_target_properties(caf::io PROPERTIES IMPORTED_LOCATION ${CAF_IO_LIBRARY}
                        INTERFACE_LINK_LIBRARIES caf::core)
  set(TROUPE_HAVE_CAF ON)
else()
  message(STATUS "CAF not found: actor targets are not built (run deploy/install-deps.sh)")
  set(TROUPE_HAVE_CAF OFF)
endif()

# The CUDA backend is built whenever nvcc is found.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(TROUPE_HAVE_CUDA ON)
else()
  set(TROUPE_HAVE_CUDA OFF)
endif()

if(TROUPE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

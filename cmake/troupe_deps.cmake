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
  # CAF's OpenSSL module: the cluster's nodes authenticate each other with mutual TLS through it.
  find_package(OpenSSL 1.1)
  find_library(CAF_OPENSSL_LIBRARY caf_openssl)
  if(CAF_OPENSSL_LIBRARY AND OpenSSL_FOUND)
    add_library(caf::openssl UNKNOWN IMPORTED)
    set_target_properties(caf::openssl PROPERTIES IMPORTED_LOCATION ${CAF_OPENSSL_LIBRARY}
                          INTERFACE_LINK_LIBRARIES "caf::io;OpenSSL::SSL;OpenSSL::Crypto")
  else()
    message(STATUS "libcaf_openssl or OpenSSL not found: the cluster runtime is not built (run deploy/install-deps.sh)")
  endif()
else()
  message(STATUS "CAF not found: actor targets are not built (run deploy/install-deps.sh)")
  set(TROUPE_HAVE_CAF OFF)
endif()

# UCX, the host-memory data plane between processes (runtime/comm/ucx_communicator): optional; without
# it make_ucx_communicator says so.
pkg_check_modules(UCX IMPORTED_TARGET ucx)
if(UCX_FOUND)
  set(TROUPE_HAVE_UCX ON)
else()
  message(STATUS "UCX not found: the UCX communicator is not built (run deploy/install-deps.sh)")
  set(TROUPE_HAVE_UCX OFF)
endif()

# The CUDA backend is built whenever nvcc is found (a GPU is only needed to run it): Ampere and
# Hopper unless CMAKE_CUDA_ARCHITECTURES says otherwise. NCCL (tensor parallel across a node's GPUs)
# is optional within it.
include(CheckLanguage)
if(NOT TROUPE_FUZZ)  # the fuzz build compiles parsers only
  check_language(CUDA)
endif()
# A compiler named on the command line that is not there (-DCMAKE_CUDA_COMPILER=/nonexistent, how a
# build without nvcc is checked on a machine that has one) counts as absent.
if(CMAKE_CUDA_COMPILER AND NOT TROUPE_FUZZ)
  find_program(troupe_nvcc NAMES ${CMAKE_CUDA_COMPILER} NO_CACHE)
endif()
if(troupe_nvcc)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(TROUPE_HAVE_CUDA ON)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    add_library(troupe::nccl UNKNOWN IMPORTED)
    set_target_properties(troupe::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                          INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    set(TROUPE_HAVE_NCCL ON)
  else()
    message(STATUS "NCCL not found: the NCCL communicator is not built")
    set(TROUPE_HAVE_NCCL OFF)
  endif()
else()
  message(STATUS "nvcc not found: the CUDA backend is not built")
  set(TROUPE_HAVE_CUDA OFF)
  set(TROUPE_HAVE_NCCL OFF)
endif()

if(TROUPE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

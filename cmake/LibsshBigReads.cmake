# Experiment, off by default: run tunneld on Debian's own libssh 0.10.6 source rebuilt with a larger
# socket read. Stock libssh reads the SSH socket 4 KB per poll round (MAX_BUF_SIZE, a compile-time constant in
# every release to date), so relaying 1 MB costs ~260 recv + ~260 poll calls; 64 KB reads cost ~21 + ~26.
#
#   tests/bench/fetch-libssh-source /var/tmp/libssh        # apt-get source libssh (Debian's package, patches applied)
#   cmake -S . -B build-big -DMP_LIBSSH_MAX_BUF_SIZE=65536 -DMP_LIBSSH_SOURCE_DIR=/var/tmp/libssh
#
# The library keeps its soname and ABI (only a #ifndef'd constant changes), so tunneld still links against the
# system's libssh.so.4 and finds the rebuilt one first through its build RUNPATH. Trade-off, measured in
# tests/bench/README.md: fewer syscalls per megabyte against tracking Debian's security updates by hand (the
# rebuilt copy does not get them; the source the archive serves can even lag the installed security release).
set(MP_LIBSSH_MAX_BUF_SIZE "" CACHE STRING "Experiment: rebuild libssh with this MAX_BUF_SIZE for tunneld (empty: stock libssh)")
set(MP_LIBSSH_SOURCE_DIR "" CACHE PATH "Unpacked libssh 0.10.6 source (tests/bench/fetch-libssh-source) for MP_LIBSSH_MAX_BUF_SIZE")

if(MP_LIBSSH_MAX_BUF_SIZE STREQUAL "")
  return()
endif()
if(NOT MP_LIBSSH_MAX_BUF_SIZE MATCHES "^[0-9]+$" OR MP_LIBSSH_MAX_BUF_SIZE LESS 4096)
  message(FATAL_ERROR "MP_LIBSSH_MAX_BUF_SIZE=${MP_LIBSSH_MAX_BUF_SIZE}: give a byte count of at least 4096")
endif()
if(NOT EXISTS "${MP_LIBSSH_SOURCE_DIR}/CMakeLists.txt" OR NOT EXISTS "${MP_LIBSSH_SOURCE_DIR}/src/socket.c")
  message(FATAL_ERROR "MP_LIBSSH_SOURCE_DIR='${MP_LIBSSH_SOURCE_DIR}' is not a libssh source tree; "
                      "run tests/bench/fetch-libssh-source DIR and pass that DIR")
endif()

include(ExternalProject)
set(_libssh_build "${CMAKE_BINARY_DIR}/libssh-big-reads")
ExternalProject_Add(libssh_big_reads
  SOURCE_DIR "${MP_LIBSSH_SOURCE_DIR}"
  BINARY_DIR "${_libssh_build}"
  CMAKE_ARGS -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS=-DMAX_BUF_SIZE=${MP_LIBSSH_MAX_BUF_SIZE}"
             -DWITH_GSSAPI=OFF -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF -DCLIENT_TESTING=OFF -DWITH_SERVER=ON
  BUILD_COMMAND ${CMAKE_COMMAND} --build "${_libssh_build}" --target ssh
  INSTALL_COMMAND ""
  BUILD_BYPRODUCTS "${_libssh_build}/lib/libssh.so.4")
add_dependencies(tunneld libssh_big_reads)
set_target_properties(tunneld PROPERTIES BUILD_RPATH "${_libssh_build}/lib" SKIP_BUILD_RPATH OFF)
target_link_options(tunneld PRIVATE "-Wl,--enable-new-dtags")
message(STATUS "tunneld runs on libssh rebuilt with MAX_BUF_SIZE=${MP_LIBSSH_MAX_BUF_SIZE} (experiment, ${_libssh_build}/lib)")

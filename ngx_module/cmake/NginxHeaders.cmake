# nginx's headers for building a dynamic module against the installed nginx (Debian nginx-dev).
#
# nginx-dev ships the sources' headers and configure under /usr/share/nginx/src but not the generated
# objs/ngx_auto_config.h. That file is produced once, at CMake configure time, by running nginx's configure with
# the flags Debian built nginx with (conf_flags, which include --with-compat: that is what makes the module's
# signature match the binary). configure writes beside the sources, so it runs on a copy in the build tree.
# The result is cached, and regenerated when the installed nginx changes (another nginx.h or conf_flags).
set(NGINX_SOURCE_DIR /usr/share/nginx/src CACHE PATH "nginx sources with conf_flags (Debian nginx-dev)")

if(NOT EXISTS ${NGINX_SOURCE_DIR}/configure OR NOT EXISTS ${NGINX_SOURCE_DIR}/conf_flags)
  message(FATAL_ERROR "nginx module: ${NGINX_SOURCE_DIR} has no configure/conf_flags; install nginx-dev "
                      "(docker/install-deps.sh) or set -DNGINX_SOURCE_DIR=...")
endif()

set(NGINX_CONFIGURED_DIR ${CMAKE_CURRENT_BINARY_DIR}/nginx-src)
set(NGINX_AUTO_CONFIG ${NGINX_CONFIGURED_DIR}/objs/ngx_auto_config.h)

# An upgraded nginx-dev must not leave the module built against the old headers and flags.
set(nginx_stamp_inputs ${NGINX_SOURCE_DIR}/src/core/nginx.h ${NGINX_SOURCE_DIR}/conf_flags)
set(nginx_stamp "")
foreach(f IN LISTS nginx_stamp_inputs)
  file(SHA256 ${f} h)
  string(APPEND nginx_stamp "${h}\n")
endforeach()
set(nginx_stamp_file ${NGINX_CONFIGURED_DIR}/objs/mp-source-stamp)
if(EXISTS ${nginx_stamp_file})
  file(READ ${nginx_stamp_file} nginx_old_stamp)
  if(NOT nginx_old_stamp STREQUAL nginx_stamp)
    message(STATUS "nginx module: the installed nginx sources changed, regenerating")
    file(REMOVE ${NGINX_AUTO_CONFIG})
  endif()
elseif(EXISTS ${NGINX_AUTO_CONFIG})
  file(REMOVE ${NGINX_AUTO_CONFIG})  # generated before stamps existed: provenance unknown
endif()

if(NOT EXISTS ${NGINX_AUTO_CONFIG})
  message(STATUS "nginx module: generating ngx_auto_config.h (runs nginx's configure once)")
  file(REMOVE_RECURSE ${NGINX_CONFIGURED_DIR})
  file(COPY ${NGINX_SOURCE_DIR}/ DESTINATION ${NGINX_CONFIGURED_DIR})
  execute_process(
    COMMAND bash -c ". ./conf_flags && ./configure \"\${NGX_CONF_FLAGS[@]}\" --builddir=objs"
    WORKING_DIRECTORY ${NGINX_CONFIGURED_DIR}
    RESULT_VARIABLE nginx_configure_result
    OUTPUT_FILE ${CMAKE_CURRENT_BINARY_DIR}/nginx-configure.log
    ERROR_FILE ${CMAKE_CURRENT_BINARY_DIR}/nginx-configure.log)
  if(NOT nginx_configure_result EQUAL 0 OR NOT EXISTS ${NGINX_AUTO_CONFIG})
    file(REMOVE_RECURSE ${NGINX_CONFIGURED_DIR}/objs)
    message(FATAL_ERROR "nginx module: nginx's configure failed, see "
                        "${CMAKE_CURRENT_BINARY_DIR}/nginx-configure.log")
  endif()
  file(WRITE ${nginx_stamp_file} "${nginx_stamp}")
endif()

add_library(nginx_headers INTERFACE)
target_include_directories(nginx_headers SYSTEM INTERFACE
  ${NGINX_CONFIGURED_DIR}/src/core
  ${NGINX_CONFIGURED_DIR}/src/event
  ${NGINX_CONFIGURED_DIR}/src/event/modules
  ${NGINX_CONFIGURED_DIR}/src/os/unix
  ${NGINX_CONFIGURED_DIR}/src/http
  ${NGINX_CONFIGURED_DIR}/src/http/modules
  ${NGINX_CONFIGURED_DIR}/src/http/v2
  ${NGINX_CONFIGURED_DIR}/objs)

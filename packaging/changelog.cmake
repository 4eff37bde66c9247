# CPack pre-build script: each package's /usr/share/doc/<package>/ gets the changelog.Debian.gz Debian requires,
# naming the version being built (with any -D CPACK_DEBIAN_PACKAGE_RELEASE=N given to cpack).
set(version "${CPACK_DEBIAN_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
string(TIMESTAMP date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(GLOB doc_dirs LIST_DIRECTORIES true "${CPACK_TEMPORARY_DIRECTORY}/*/usr/share/doc/*")
if(NOT doc_dirs)
  message(FATAL_ERROR "changelog.cmake: no usr/share/doc/<package> under ${CPACK_TEMPORARY_DIRECTORY}")
endif()
foreach(dir IN LISTS doc_dirs)
  get_filename_component(package ${dir} NAME)
  file(WRITE ${dir}/changelog.Debian
    "${package} (${version}) bookworm; urgency=medium\n\n"
    "  * Built from the monitoring-proxy ${CPACK_DEBIAN_PACKAGE_VERSION} tree with CPack.\n\n"
    " -- ${CPACK_PACKAGE_CONTACT}  ${date}\n")
  execute_process(COMMAND gzip -9nf ${dir}/changelog.Debian RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "changelog.cmake: gzip failed for ${dir}/changelog.Debian")
  endif()
endforeach()

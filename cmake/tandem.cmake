# Helpers that keep every module's CMakeLists.txt to a few lines.
#
#   tandem_library(NAME SOURCES a.cc b.cc DEPS tandem_common ...)
#     A static library target named NAME; its headers are included as "module/file.h"
#     from the src/ root.
#   tandem_test(NAME SOURCES a_test.cc DEPS tandem_x ...)
#     A GoogleTest executable registered with CTest (one CTest test per TEST()).

function(tandem_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

function(tandem_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    TANDEM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    TANDEM_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS unit)
endfunction()

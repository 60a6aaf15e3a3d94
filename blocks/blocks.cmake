# blocks/blocks.cmake: embeds the block kernels (blocks/*.tj) into the
# library. Included by the top-level CMakeLists before the library target.
#
# Each .tj text becomes a char array in ${CMAKE_BINARY_DIR}/blocks_sources.c
# (written as '\xNN' bytes, so no quoting or encoding issues arise), and that
# file joins TJ_SOURCES. The .tj files are configure dependencies: editing one
# re-runs CMake, and configure_file rewrites the C file only when the text
# changed, so nothing else rebuilds needlessly.

set(TJ_BLOCKS_TJ softmax layernorm dropout attention)
set(TJ_BLOCKS_EMBEDDED "")
foreach(name ${TJ_BLOCKS_TJ})
  set(path ${CMAKE_SOURCE_DIR}/blocks/${name}.tj)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${path})
  file(READ ${path} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
  # One line of C per line of source.
  string(REPLACE "'\\x0a'," "'\\x0a',\n  " bytes "${bytes}")
  string(APPEND TJ_BLOCKS_EMBEDDED
    "const char blk_src_${name}[] = {\n  ${bytes}0\n};\n"
    "const size_t blk_src_${name}_len = ${len};\n\n")
endforeach()
configure_file(${CMAKE_SOURCE_DIR}/blocks/blocks_sources.c.in ${CMAKE_BINARY_DIR}/blocks_sources.c @ONLY)
list(APPEND TJ_SOURCES ${CMAKE_BINARY_DIR}/blocks_sources.c)

# tests/fuzz/fuzz.cmake: the libFuzzer targets (docs/fuzzing.md). Included by
# the top-level CMakeLists, before the library, only with -DTILEJIT_FUZZ=ON,
# in a build directory of its own configured with clang:
#
#   CC=clang-19 CXX=clang++-19 cmake -S . -B build-fuzz -G Ninja -DTILEJIT_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_targets
#
# Everything in that build (the library included) is compiled with ASan,
# UBSan and libFuzzer's coverage instrumentation (fuzzer-no-link); only the
# fuzz executables link libFuzzer's main. UB aborts, so the fuzzer sees it.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TILEJIT_FUZZ needs clang (libFuzzer): configure with CC=clang-19 CXX=clang++-19")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=undefined)
add_link_options(-fsanitize=address,undefined)
# Warnings are the gcc builds' gate (TILEJIT_WERROR); clang flags idioms the
# code uses on purpose (`&` on bools to evaluate both sides in sema.c), and
# a fuzz build must not fail on them.
add_compile_options(-Wno-error)

set(TJ_FUZZ_TARGETS fuzz_frontend fuzz_codegen fuzz_cache fuzz_tunestore)
foreach(name ${TJ_FUZZ_TARGETS})
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.c)
  # tilejit_static is defined later in the top-level file; names resolve at
  # generate time.
  target_link_libraries(${name} PRIVATE tilejit_static)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CXX)
endforeach()
add_custom_target(fuzz_targets DEPENDS ${TJ_FUZZ_TARGETS})

# Writes the reader targets' seeds with the real writers (make_corpus.sh).
add_executable(fuzz_make_seeds ${CMAKE_SOURCE_DIR}/tests/fuzz/make_seeds.c)
target_link_libraries(fuzz_make_seeds PRIVATE tilejit_static)
set_target_properties(fuzz_make_seeds PROPERTIES LINKER_LANGUAGE CXX)

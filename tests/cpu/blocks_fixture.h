/* blocks_fixture.h: the context and blocks handle every test of a block
 * creates and frees, and the OK() assertion that prints the library's
 * message. The GPU suites add a stream (tests/gpu/gpu_blocks.h). */
#ifndef TJ_BLOCKS_FIXTURE_H
#define TJ_BLOCKS_FIXTURE_H

#include <check.h>
#include <string.h>

#include "tilejit/blocks.h"
#include "tilejit/tilejit.h"

static tj_ctx *ctx;
static tj_blocks *blk;

#define OK(call)                                                                     \
  do {                                                                               \
    tj_status st_ = (call);                                                          \
    ck_assert_msg(st_ == TJ_OK, "%s -> %s: %s", #call, tj_status_str(st_), tj_ctx_last_error(ctx)); \
  } while (0)

// A call that must fail with `want` and a message containing msg.
static inline void expect_error(tj_status got, tj_status want, const char *msg) {
  ck_assert_msg(got == want, "status %s, want %s (%s)", tj_status_str(got), tj_status_str(want),
                tj_ctx_last_error(ctx));
  ck_assert_msg(strstr(tj_ctx_last_error(ctx), msg) != NULL, "message '%s' lacks '%s'", tj_ctx_last_error(ctx),
                msg);
}

static inline void fixture_open(void) {
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_int_eq(tj_blocks_create(ctx, &blk), TJ_OK);
}

static inline void fixture_close(void) {
  tj_blocks_free(blk);
  tj_ctx_free(ctx);
}

#endif

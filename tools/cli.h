/* cli.h: subcommands of the tilejit CLI, one file per group. Each returns
 * the process exit code: 0 success, 1 failure, 2 usage error. */
#ifndef TJ_CLI_H
#define TJ_CLI_H

int cmd_compile(int argc, char **argv);   // tilejit.c
int cmd_info(int argc, char **argv);      // cmd_runtime.c
int cmd_cache(int argc, char **argv);     // cmd_runtime.c
int cmd_tune(int argc, char **argv);      // cmd_tune.c
int cmd_bench(int argc, char **argv);     // cmd_tune.c

#endif

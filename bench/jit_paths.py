#!/usr/bin/env python3
"""jit_paths.py: one kernel's PTX loaded two ways, timed side by side.

The runtime turns PTX into a module with cuModuleLoadDataEx, a whole-program
JIT (runtime/launch.c, jit_load). Until session 7 it went through the
driver's linker (cuLinkCreate / cuLinkAddData / cuLinkComplete, then
cuModuleLoadData), which compiles the PTX as relocatable code, as
`ptxas -c` does. The two give the same PTX different register counts and
schedules: whole-program took the layernorm forward from 120 registers to 80,
and the dropout forward from 148 to ~108, and the dropout forward measured
13-29% slower in the harness after the switch (docs/benchmarks.md, fp16
none+bias 32768x4096: 3840 -> 2715 GB/s, peers unchanged).

Besides the two JIT paths it times the PTX as it was before the other
changes since that run: the f32 -> f16 conversions unpaired (7c30f1f), and
the sm_90 target (e417b92 moved 9.0 devices to sm_90a).

This script compiles a block kernel with tilejit (the defines the block
library uses for that shape), takes its PTX specialised as a launch on
these arguments gets it (`assume`, by the launcher's rules: a pointer
16-byte aligned, an integer a multiple of 16 or equal to 1), loads it
through both paths, checks
that both write the same bytes, and times each with do_bench (L2 flushed,
median), beside the copy of the same tensor and tilejit's own launch.

Run on the GPU machine from the repository root:
    python3 bench/jit_paths.py [--lib build-gpu/libtilejit.so] [--json out.json]
"""
import argparse
import ctypes as C
import json
import math
import os
import re
import sys

import torch
import triton

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import tilejit  # noqa: E402

CU_JIT_INPUT_PTX = 1
CU_FUNC_ATTRIBUTE_NUM_REGS = 4


def cu_check(r, what):
    if r != 0:
        raise RuntimeError(f"{what} failed: CUresult {r}")


class Driver:
    def __init__(self):
        self.cu = C.CDLL("libcuda.so.1")
        cu = self.cu
        cu.cuModuleLoadDataEx.argtypes = [C.POINTER(C.c_void_p), C.c_char_p, C.c_uint, C.c_void_p, C.c_void_p]
        cu.cuModuleLoadData.argtypes = [C.POINTER(C.c_void_p), C.c_void_p]
        cu.cuLinkCreate_v2.argtypes = [C.c_uint, C.c_void_p, C.c_void_p, C.POINTER(C.c_void_p)]
        cu.cuLinkAddData_v2.argtypes = [C.c_void_p, C.c_int, C.c_char_p, C.c_size_t, C.c_char_p, C.c_uint,
                                        C.c_void_p, C.c_void_p]
        cu.cuLinkComplete.argtypes = [C.c_void_p, C.POINTER(C.c_void_p), C.POINTER(C.c_size_t)]
        cu.cuLinkDestroy.argtypes = [C.c_void_p]
        cu.cuModuleGetFunction.argtypes = [C.POINTER(C.c_void_p), C.c_void_p, C.c_char_p]
        cu.cuFuncGetAttribute.argtypes = [C.POINTER(C.c_int), C.c_int, C.c_void_p]
        cu.cuLaunchKernel.argtypes = [C.c_void_p, C.c_uint, C.c_uint, C.c_uint, C.c_uint, C.c_uint, C.c_uint,
                                      C.c_uint, C.c_void_p, C.c_void_p, C.c_void_p]

    def function(self, ptx, name, linker):
        """(CUfunction, registers) of `name` in ptx, JIT-compiled whole-program or through the linker."""
        cu, mod = self.cu, C.c_void_p()
        data = ptx.encode() + b"\0"
        if linker:
            st = C.c_void_p()
            cu_check(cu.cuLinkCreate_v2(0, None, None, C.byref(st)), "cuLinkCreate")
            cu_check(cu.cuLinkAddData_v2(st, CU_JIT_INPUT_PTX, data, len(data), name.encode(), 0, None, None),
                     "cuLinkAddData")
            cubin, n = C.c_void_p(), C.c_size_t()
            cu_check(cu.cuLinkComplete(st, C.byref(cubin), C.byref(n)), "cuLinkComplete")
            cu_check(cu.cuModuleLoadData(C.byref(mod), cubin), "cuModuleLoadData")
            cu.cuLinkDestroy(st)
        else:
            cu_check(cu.cuModuleLoadDataEx(C.byref(mod), data, 0, None, None), "cuModuleLoadDataEx")
        fn = C.c_void_p()
        cu_check(cu.cuModuleGetFunction(C.byref(fn), mod, name.encode()), "cuModuleGetFunction")
        regs = C.c_int()
        cu.cuFuncGetAttribute(C.byref(regs), CU_FUNC_ATTRIBUTE_NUM_REGS, fn)
        return fn, regs.value

    def launcher(self, fn, grid, threads, params):
        """A no-argument callable launching fn on torch's current stream; params: (name, ctypes type, value)."""
        vals = [t(v) for _, t, v in params]
        ptrs = (C.c_void_p * len(vals))(*[C.cast(C.pointer(v), C.c_void_p) for v in vals])

        def run():
            s = C.c_void_p(torch.cuda.current_stream().cuda_stream)
            cu_check(self.cu.cuLaunchKernel(fn, grid, 1, 1, threads, 1, 1, 0, s, ptrs, None), "cuLaunchKernel")
        run.keep = (vals, ptrs)
        return run


def unpaired(ptx):
    """ptx with each paired f32 -> f16/bf16 conversion (cvt.rn.f16x2.f32 d, a, b: a to the upper half)
    written as two single conversions and a mov, as codegen emitted before 7c30f1f."""
    pat = re.compile(r"cvt\.rn\.(bf16|f16)x2\.f32\s+(%\w+),\s*(%\w+),\s*(%\w+);")

    def rep(m):
        t, d, a, b = m.groups()
        return (f"{{ .reg .b16 %tjh, %tjl; cvt.rn.{t}.f32 %tjh, {a}; cvt.rn.{t}.f32 %tjl, {b}; "
                f"mov.b32 {d}, {{%tjl, %tjh}}; }}")
    return pat.sub(rep, ptx)


def as_sm90(ptx):
    """ptx retargeted from sm_90a to plain sm_90 (PTX 7.8), as the runtime targeted before e417b92."""
    return ptx.replace(".target sm_90a", ".target sm_90").replace(".version 8.0", ".version 7.8")


# (label, linker, PTX rewrite): HEAD's runtime first, then what changed since the fast dropout run.
PATHS = [("whole-program (cuModuleLoadDataEx)", False, lambda p: p),
         ("linker (cuLinkCreate)", True, lambda p: p),
         ("whole-program, cvt unpaired", False, unpaired),
         ("linker, cvt unpaired, sm_90", True, lambda p: as_sm90(unpaired(p)))]


def assume_of(params):
    """The specialisation runtime/launch.c picks for these arguments, as tj_compile_opts.assume."""
    out = []
    for name, t, v in params:
        if t is C.c_float:
            continue
        if v % 16 == 0:
            out.append(f"{name}=16")
        elif t is not C.c_uint64 and v == 1:
            out.append(f"{name}=1")
    return ",".join(out)


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def dropout_case(sms, act, has_bias):
    """dropout_fwd as blocks/dropout.c launches it for fp16 32768 x 4096, p = 0.1."""
    M, K = 32768, 4096
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    b = torch.randn(K, device="cuda", dtype=torch.float16)
    y = torch.empty_like(x)
    # pick_config: vec 8, block 4096, rows 1, 4 warps; plan_groups with 64 groups per SM.
    steps, groups = M, 64 * sms
    s = math.ceil(steps / min(groups, steps))
    rpp = s
    G = math.ceil(M / rpp)
    p = 0.1
    defines = ["T=f16", "BLOCK=4096", "ROWS=1", "VEC=8", "BGS=9", f"ACT={act}",
               f"HAS_BIAS={'true' if has_bias else 'false'}", "DROP=true", "K4=true", "FLAT=true"]
    i32, i64, u32, f32, ptr = C.c_int32, C.c_int64, C.c_uint32, C.c_float, C.c_uint64
    params = [("y", ptr, y.data_ptr()), ("x", ptr, x.data_ptr()), ("bias", ptr, b.data_ptr()), ("M", i32, M),
              ("K", i32, K), ("seq", i32, M), ("rpp", i32, rpp), ("ncb", i32, 1), ("sx_b", i64, M * K),
              ("sx_r", i64, K), ("sy_b", i64, M * K), ("sy_r", i64, K), ("seed", i64, 1234), ("offset", i64, 0),
              ("thresh", u32, math.ceil(p * 2 ** 24)), ("scale", f32, 1 / (1 - p)), ("a0", f32, 0.0),
              ("a1", f32, 0.0), ("zero", f32, 0.0)]
    name = f"dropout_fwd act={act} bias={has_bias} fp16 32768x4096"
    return dict(name=name, file="blocks/dropout.tj", kernel="dropout_fwd", defines=defines, num_warps=4,
                grid=G, params=params, out=y, src=x, nbytes=2 * x.numel() * 2)


def norm_case():
    """norm_fwd LayerNorm as blocks/norm.c launches it for bf16 4096 x 8192 (8 warps, one row a program)."""
    M, K = 4096, 8192
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    w = torch.rand(K, device="cuda", dtype=torch.bfloat16) + 0.5
    b = torch.randn(K, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)
    mean = torch.empty(M, device="cuda")
    rstd = torch.empty(M, device="cuda")
    defines = ["T=bf16", "BLOCK=8192", "ROWS=1", "RMS=false", "HAS_W=true", "HAS_B=true", "FLAT=true"]
    i32, i64, f32, ptr = C.c_int32, C.c_int64, C.c_float, C.c_uint64
    params = [(n, ptr, t.data_ptr()) for n, t in zip(("y", "x", "w", "b", "mean", "rstd"), (y, x, w, b, mean, rstd))]
    params += [("M", i32, M), ("K", i32, K), ("seq", i32, M), ("sx_b", i64, 0), ("sx_r", i64, K), ("sy_b", i64, 0),
               ("sy_r", i64, K), ("eps", f32, 1e-5)]
    return dict(name="norm_fwd layernorm bf16 4096x8192", file="blocks/layernorm.tj", kernel="norm_fwd",
                defines=defines, num_warps=8, grid=M, params=params, out=y, src=x, nbytes=2 * x.numel() * 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.zeros(1, device="cuda")   # the primary context, current on this thread
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    cc = torch.cuda.get_device_capability(0)
    arch = "sm_90a" if cc == (9, 0) else f"sm_{cc[0]}{cc[1]}"
    lib = tilejit.load_library(args.lib) if args.lib else None
    ctx = tilejit.Context(0, lib=lib)
    drv = Driver()
    cases = [dropout_case(sms, 0, True), dropout_case(sms, 0, False), dropout_case(sms, 3, True), norm_case()]
    results = []
    for c in cases:
        k = ctx.compile(path=c["file"], kernel=c["kernel"], defines=c["defines"], num_warps=c["num_warps"],
                        arch=arch, assume=assume_of(c["params"]))
        ptx = k.ptx
        threads = 32 * c["num_warps"]
        row = dict(case=c["name"], arch=arch)
        outs = {}
        copy_dst = torch.empty_like(c["src"])
        row["copy_same_size_gbps"] = c["nbytes"] / bench(lambda: copy_dst.copy_(c["src"])) / 1e6
        for path, linker, rewrite in PATHS:
            fn, regs = drv.function(rewrite(ptx), c["kernel"], linker)
            run = drv.launcher(fn, c["grid"], threads, c["params"])
            c["out"].zero_()
            run()
            torch.cuda.synchronize()
            outs[path] = c["out"].clone()
            ms = bench(run)
            row[path] = dict(registers=regs, ms=ms, gbps=c["nbytes"] / ms / 1e6)
        paths = list(outs)
        row["same_output"] = all(bool(torch.equal(outs[paths[0]], outs[q])) for q in paths[1:])
        results.append(row)
        print(f"{c['name']}: same output {row['same_output']}; copy of the same tensor "
              f"{row['copy_same_size_gbps']:.0f} GB/s")
        for p in paths:
            r = row[p]
            print(f"    {p:36} {r['registers']:4} regs  {r['ms'] * 1e3:8.1f} us  {r['gbps']:6.0f} GB/s  "
                  f"({r['gbps'] / row['copy_same_size_gbps']:.3f} of the copy)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

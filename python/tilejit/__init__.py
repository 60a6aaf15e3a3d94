"""tilejit: a ctypes binding of libtilejit (no compiled extension).

    import torch, tilejit
    y = tilejit.softmax(x)                      # x: a CUDA (or CPU) torch tensor
    import tilejit.torch as tjt                 # autograd-aware modules' building blocks
    y = tjt.layer_norm(x, (K,), w, b)           # y.sum().backward() works

The block functions (softmax, layer_norm, rms_norm, dropout_act, attention
and their *_backward) take torch tensors, tilejit.HostTensor or any DLPack
object, run on the tensors' device and torch's current stream, and raise
tilejit.TilejitError on failure. tilejit.Context / Kernel expose the kernel
compiler itself. See docs/python.md.
"""
from . import patterns
from ._lib import (COMPILE_DEBUG, COMPILE_FRONTEND, COMPILE_NO_CACHE, COMPILE_NO_FP_FUSION,
                   DLDataType, DLDevice, DLManagedTensor, DLTensor, DropoutOpts, SoftmaxOpts, TilejitError,
                   load_library, library_path)
from .blocks import (ACTIVATIONS, AttnLayout, Blocks, attention, attention_backward, attention_bwd_workspace_size,
                     block_call, block_info, block_names, dropout_act, dropout_act_backward,
                     dropout_bwd_workspace_size, dropout_counters, get_blocks, layer_norm, layer_norm_backward,
                     log_softmax, next_dropout_seed, norm_bwd_workspace_size, rms_norm, rms_norm_backward, softmax,
                     softmax_backward)
from .core import Context, Kernel, Ptr, llvm_version, version
from .dlpack import to_dltensor
from .host import HostTensor

__all__ = ["TilejitError", "load_library", "library_path", "version", "llvm_version", "Context", "Kernel", "Ptr",
           "HostTensor", "DLTensor", "DLDevice", "DLDataType", "DLManagedTensor", "SoftmaxOpts", "DropoutOpts",
           "to_dltensor", "Blocks", "get_blocks", "AttnLayout", "ACTIVATIONS", "softmax", "log_softmax",
           "softmax_backward", "layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
           "dropout_act", "dropout_act_backward", "dropout_counters", "next_dropout_seed", "attention",
           "attention_backward", "norm_bwd_workspace_size", "dropout_bwd_workspace_size",
           "attention_bwd_workspace_size", "block_names", "block_info", "block_call", "patterns",
           "COMPILE_NO_CACHE", "COMPILE_FRONTEND", "COMPILE_DEBUG", "COMPILE_NO_FP_FUSION"]

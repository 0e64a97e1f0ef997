"""Analysis: the numbers the lectures compute by hand, for any ``nn.Module``.

Parameters, multiply-accumulates and other operations, activation memory, training memory,
receptive fields, convolution arithmetic, and the data behind the accuracy-vs-compute chart.
Pure functions over a model and an input size; nothing here trains or draws.

Modules: ``summarize`` (``summary()``: one forward pass -> :class:`Summary`), ``tracer`` (the dispatch mode that
watches that pass), ``ops`` (what each ATen op costs), ``receptive_field`` (fields: the
arithmetic, stacks, and what each ATen op does to them), ``format`` (the summary's records and
renderings), ``table`` (the one table writer), ``conv_arith`` (the lectures' hand
calculations), ``chart`` (accuracy-vs-compute data).
"""

from cnnlab.analysis.conv_arith import (
    ConvLayer,
    PoolResult,
    conv_layer,
    conv_output_size,
    conv_params,
    pool2d,
    same_padding,
)
from cnnlab.analysis.format import LayerRow, Summary, TrainingMemory, VideoCompute
from cnnlab.analysis.receptive_field import (
    Field,
    LayerSpec,
    StackWorking,
    field_of_stack,
    grow,
    stack_working,
    stacked_field,
)
from cnnlab.analysis.summarize import profile, summary, video_compute

__all__ = [
    "ConvLayer",
    "Field",
    "LayerRow",
    "LayerSpec",
    "PoolResult",
    "StackWorking",
    "Summary",
    "TrainingMemory",
    "VideoCompute",
    "conv_layer",
    "conv_output_size",
    "conv_params",
    "field_of_stack",
    "grow",
    "pool2d",
    "profile",
    "same_padding",
    "stack_working",
    "stacked_field",
    "summary",
    "video_compute",
]

"""Analysis: the numbers the lectures compute by hand, for any ``nn.Module``.

Parameters, multiply-accumulates and other operations, activation memory, training memory,
receptive fields, convolution arithmetic, and the data behind the accuracy-vs-compute chart.
Pure functions over a model and an input size; nothing here trains or draws.
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
from cnnlab.analysis.receptive_field import Field, LayerSpec, field_of_stack, grow, stacked_field
from cnnlab.analysis.summary import (
    LayerRow,
    Summary,
    TrainingMemory,
    VideoCompute,
    profile,
    summary,
    video_compute,
)

__all__ = [
    "ConvLayer",
    "Field",
    "LayerRow",
    "LayerSpec",
    "PoolResult",
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
    "stacked_field",
    "summary",
    "video_compute",
]

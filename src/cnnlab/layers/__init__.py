"""Blocks shared by several model families. They know no network.

Import the block from its module (``from cnnlab.layers.conv import ConvNormAct``).
"""

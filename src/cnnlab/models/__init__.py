"""Every network in the course, one module per family, each registered by name.

Importing this package imports every family module (each registers its builders).
"""

import importlib
import pkgutil

from cnnlab.models.registry import (
    ModelInfo,
    ParamCount,
    Reported,
    create_model,
    get_model_info,
    list_models,
    main_output,
    model_label,
    register_model,
    short_citation,
    split_outputs,
)

# One module per family; importing each one fills the registry. Listing them by walking the
# package keeps a new family from being forgotten here.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ModelInfo",
    "ParamCount",
    "Reported",
    "create_model",
    "get_model_info",
    "list_models",
    "main_output",
    "model_label",
    "register_model",
    "short_citation",
    "split_outputs",
]

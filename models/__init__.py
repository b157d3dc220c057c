"""The model zoo (cnn, sasa, mlp) and its training recipe.

Importing this package does not import torch: the registry lists the models and their
defaults on machines without torch; building, training and loading import it on use.
"""

from qtool.models.registry import ZOO, ModelSpec, get_spec, list_models

__all__ = ["ZOO", "ModelSpec", "get_spec", "list_models"]

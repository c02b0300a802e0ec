"""Few-shot methods, one file each; importing this package registers them all."""
from fewshot.methods import protonet as _protonet  # noqa: F401
from fewshot.methods import siamese as _siamese  # noqa: F401
from fewshot.methods import metric as _metric  # noqa: F401  (registers "metric" and "triplet")
from fewshot.methods import mann as _mann  # noqa: F401  (registers "mann")
from fewshot.methods import matching as _matching  # noqa: F401  (registers "matching")
from fewshot.methods import relation as _relation  # noqa: F401  (registers "relation")
from fewshot.methods import mahalanobis as _mahalanobis  # noqa: F401  (registers "mahalanobis")
from fewshot.methods import transfer as _transfer  # noqa: F401  (registers "transfer")
from fewshot.methods import meta_lstm as _meta_lstm  # noqa: F401  (registers "meta_lstm")
from fewshot.methods import maml as _maml  # noqa: F401  (registers "maml")
from fewshot.methods.base import Method
from fewshot.methods.registry import METHODS

__all__ = ["METHODS", "Method"]

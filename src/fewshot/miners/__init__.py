"""In-batch triplet miners; importing this package registers them all."""
from fewshot.miners import all_triplets as _all_triplets  # noqa: F401
from fewshot.miners import batch_hard as _batch_hard  # noqa: F401
from fewshot.miners import semi_hard as _semi_hard  # noqa: F401
from fewshot.miners.all_triplets import AllTripletsMiner
from fewshot.miners.base import Miner, Triplets, label_masks
from fewshot.miners.batch_hard import BatchHardMiner
from fewshot.miners.registry import MINERS, build_miner
from fewshot.miners.semi_hard import SemiHardMiner

__all__ = ["MINERS", "AllTripletsMiner", "BatchHardMiner", "Miner", "SemiHardMiner", "Triplets", "build_miner",
           "label_masks"]

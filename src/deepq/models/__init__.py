"""Networks are plain nn.Modules: forward(*inputs) -> raw head parameters [B, n_outputs].

`net.inputs` names the Batch fields a network reads, in order (default ("x",)); the exported artifact takes
the same inputs. `NETWORKS` is the registry the conformance test runs over.
"""

from __future__ import annotations

from torch import nn

from deepq.models.deepar import DeepARNet
from deepq.models.lstm import LSTMNet
from deepq.models.master import MasterNet
from deepq.models.tft import TFTNet
from deepq.models.transformer import TransformerNet

NETWORKS: dict[str, type[nn.Module]] = {
    "lstm": LSTMNet,
    "transformer": TransformerNet,
    "tft": TFTNet,
    "deepar": DeepARNet,
    "master": MasterNet,
}


def net_inputs(net: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(net, "inputs", ("x",)))

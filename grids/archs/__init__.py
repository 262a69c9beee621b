"""Network architectures used by GRIDS (one module per file)."""

from grids.archs.msrresnet import MSRResNet
from grids.archs.restormer import Restormer
from grids.archs.rrdbnet import RRDBNet
from grids.archs.srresnet import SRResNet

__all__ = ["ARCHS", "MSRResNet", "RRDBNet", "Restormer", "SRResNet"]

# Restoration backbones by their config name (`training.arch`).
ARCHS = {"srresnet": SRResNet, "restormer": Restormer, "rrdbnet": RRDBNet}

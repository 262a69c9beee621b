"""Network architectures used by GRIDS (one module per file)."""

from grids.archs.msrresnet import MSRResNet

__all__ = ["MSRResNet"]

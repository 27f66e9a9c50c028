"""Dataset adapters (published formats -> stores) and simulated ground-truth brains."""

from neuroalign.datasets.simulate import GroundTruthBrain, ROISpec, SimulationResult, simulate

__all__ = ["simulate", "SimulationResult", "GroundTruthBrain", "ROISpec"]

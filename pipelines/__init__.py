"""dcat pipelines: every stage as a plain importable function.

Training modules import only numpy, torch and h5py; media readers (decord, PyAV, librosa,
soundfile) are imported inside the preprocessing functions that use them.
"""

__version__ = "0.1.0"

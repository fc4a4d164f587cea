"""streamseg: real-time semantic segmentation of video streams.

Data flow (see ``pipeline.py``): source -> batch -> preprocess -> infer -> postprocess -> outputs.
Importing this package stays light: no torch, TensorRT, pycuda, GStreamer or ONNX Runtime.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

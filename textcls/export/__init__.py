"""`textcls export` (an HF model folder or ONNX) and `textcls quantize` (an int8 run directory)."""

"""The Jetson backend: ONNX for TensorRT (fp32, fp16, int8 with explicit Q/DQ); see README.md."""

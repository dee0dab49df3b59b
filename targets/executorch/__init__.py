"""ExecuTorch (XNNPACK delegate) backend; see README.md."""

"""The runtime stays light: no torch, no edgecomp, and onnxruntime only once an artifact loads."""

from __future__ import annotations

SCRIPT = """
import json, sys
import numpy as np
import edgecomp_runtime
after_import = {name: name in sys.modules for name in ("onnxruntime", "torch", "edgecomp")}
model = edgecomp_runtime.load(sys.argv[1])
forecast = model.predict(np.zeros((model.input_len, len(model.features))))
after_predict = {name: name in sys.modules for name in ("onnxruntime", "torch", "edgecomp")}
print(json.dumps({"import": after_import, "predict": after_predict, "shape": forecast.shape}))
"""


def test_import_and_predict_load_neither_torch_nor_edgecomp(make_artifact, run_fresh):
    # execute: a fresh interpreter, so nothing the test process imported leaks in
    modules = run_fresh(SCRIPT, str(make_artifact()))
    # assert
    assert modules["import"] == {"onnxruntime": False, "torch": False, "edgecomp": False}
    assert modules["predict"] == {"onnxruntime": True, "torch": False, "edgecomp": False}
    assert modules["shape"] == [2, 2]

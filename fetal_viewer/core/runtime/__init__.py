"""Inference runtimes for the classifier: one interface over OpenVINO, ONNX Runtime and torch
(:mod:`.backends`), the ONNX graph they share (:mod:`.graph`), and ``auto``, which measures
once per machine and model which of them is fastest while still agreeing with the float32
reference (:mod:`.auto`). Torch is optional here: without it the graph must come with the
checkpoint."""

"""Sample-quality metrics: a domain classifier's features, FID, KID, class coverage, and the
`Evaluator` that scores any "function that samples images" against held-out real images.

Layer: above `common/`, below `training/` and `export/`; knows no model file format and imports
no TensorFlow on the scoring path (the classifier runs in onnxruntime once it is cached).
"""

"""pipelines: data, float training, post-training quantization, QAT, evaluation."""

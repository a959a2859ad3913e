"""Exports of a trained model to other runtimes (`emocli export onnx`)."""

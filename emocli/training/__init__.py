"""Fine-tuning: labelled data, losses, thresholds, metrics, the accelerate loop (`finetune`), distillation."""

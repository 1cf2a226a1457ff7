"""Plots and docs/RESULTS.md from the suites' JSON files: one section per suite with its table, plot, command and machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

ORDER = ("capacity", "retention", "ablation", "sweeps", "week", "adapter-capacity", "counterfact", "retrieval")
TITLES = {
    "capacity": "Capacity: recall against the number of facts",
    "retention": "Retention: the first batch as later batches arrive",
    "ablation": "Dual-system ablation: MEMIT only, LoRA only, both",
    "sweeps": "Sweeps: lambda and covariance samples",
    "week": "A simulated week: a night after each day",
    "adapter-capacity": "Adapter capacity: facts one night's adapter holds, by rank",
    "counterfact": "CounterFact: sequential batches, three editing modes",
    "retrieval": "Retrieval memory as the baseline",
}
MODES = {"nullspace": "ours (cross-edit constraints)", "none": "MEMIT, unconstrained", "alphaedit": "AlphaEdit projection"}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _pct(v) -> str:
    return "-" if v is None else f"{v:+.1%}"


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- tables -----------------------------------------------------------------

def _sequential_table(r: dict, key: str) -> str:
    modes = list(r["runs"])
    head = ["facts edited"] + [f"{MODES.get(m, m)}: {k}" for m in modes for k in ("raw", "chat", "paraphrase")]
    sizes = sorted({row["facts"] for m in modes for row in r["runs"][m]})
    rows = []
    for n in sizes:
        row: list = [n]
        for m in modes:
            hit = next((x[key] for x in r["runs"][m] if x["facts"] == n), None)
            row += [hit[k] if hit else None for k in ("raw", "chat", "paraphrase")]
        rows.append(row)
    return _table(head, rows)


def _ablation_table(r: dict) -> str:
    names = {"memit_only": "MEMIT only", "lora_only": "LoRA only", "both": "both (agentmem)"}
    rows = []
    for key, s in r["systems"].items():
        after = s.get("recall_after_sleep") or {}
        rows.append([names.get(key, key), s["time_to_first_recall_s"], s["recall_right_away"]["chat"],
                     s["recall_right_away"]["paraphrase"], after.get("chat"), after.get("paraphrase"),
                     s["perplexity_right_away"], s["perplexity_after_sleep"]])
    return _table(["system", "time to first recall (s)", "chat recall right away", "paraphrase right away",
                   "chat recall after a night", "paraphrase after a night", "perplexity right away",
                   "perplexity after a night"], rows) + f"\n\nUnedited model: perplexity {_fmt(r['base']['perplexity'])}, " \
        f"chat recall {_fmt(r['base']['recall']['chat'])}."


def _sweep_rows(rows: list[dict], key: str) -> list[list]:
    return [[x[key], x["recall"]["raw"], x["recall"]["chat"], x["recall"]["paraphrase"], x["probes_unchanged"],
             _pct(x["perplexity_vs_base"]), x["seconds_per_fact"]] for x in rows]


def _sweeps_table(r: dict) -> str:
    cols = ["raw", "chat", "paraphrase", "unrelated probes unchanged", "perplexity vs base", "s/fact"]
    parts = []
    if r["lambda"]:
        parts.append(_table(["lambda"] + cols, _sweep_rows(r["lambda"], "lambda")))
    if r["cov_samples"]:
        parts.append(_table(["covariance samples"] + cols, _sweep_rows(r["cov_samples"], "cov_samples")))
    else:
        parts.append("Covariance sample counts: not run.")
    return "\n\n".join(parts) + f"\n\nUnedited perplexity {_fmt(r['perplexity_base'])}."


def _held(d: dict):
    """Facts the adapter held when the day's night began (runs before 2026-12-05 did not record it)."""
    return d.get("night_parts", {}).get("prepare", {}).get("held")


def _night_parts(d: dict) -> str:
    parts = d.get("night_parts", {})
    return ", ".join(f"{k} {v['seconds']:.0f}" for k, v in parts.items() if "seconds" in v) or "-"


def _consolidated(d: dict) -> str:
    c = d.get("consolidated")
    return f"{_fmt(c['chat'])} / {_fmt(c['paraphrase'])} of {c['facts']}" if c and c["facts"] else "-"


def _week_table(r: dict) -> str:
    rows = [[d["day"], d["facts_so_far"], _held(d), d["chat_recall"], d["paraphrase_recall"], d["raw_recall"],
             _consolidated(d), _pct(d["perplexity_vs_base"]), d.get("right_kept"), f"{d['dissolved']:.0%}",
             d["night_seconds"], d.get("night_vs_first"), _night_parts(d), d.get("night_steps"), d.get("night_asks"),
             d["night"]] for d in r["days"]]
    return _table(["day", "facts so far", "held at nightfall", "chat recall", "held-out paraphrase", "raw recall",
                   "edit dissolved: chat / paraphrase", "perplexity vs base", "right answers kept", "edits dissolved",
                   "night (s)", "vs night 1", "night's parts (s)", "training steps", "recall asks", "night outcome"],
                  rows)


def _adapter_capacity_table(r: dict) -> str:
    rows = [[p["rank"], p["parameters"], p["facts"], p["recall"]["chat"], p["recall"]["paraphrase"], p["recall"]["raw"],
             _pct(p["perplexity"] / r["perplexity_base"] - 1), p["steps"], p["train_seconds"]] for p in r["points"]]
    return _table(["rank", "adapter parameters", "facts learned", "chat recall", "held-out paraphrase", "raw recall",
                   "perplexity vs base", "training steps", "training (s)"], rows)


def _counterfact_table(r: dict) -> str:
    rows = [["unedited model", None, None, None, r["base"]["fluency"], r["base"]["perplexity"], None]]
    rows += [[MODES.get(m, m), s["efficacy"], s["generalisation"], s["specificity"], s["fluency"], s["perplexity"],
              s["edit_seconds"]] for m, s in r["modes"].items()]
    return _table(["mode", "efficacy", "generalisation", "specificity", "fluency (n-gram entropy)", "perplexity",
                   "edit time (s)"], rows)


def _retrieval_table(r: dict) -> str:
    rows = [[f"retrieval, top {x['k']} in the prompt", None, x["chat"], x["paraphrase"],
             f"{x['chat_retrieved']:.0%} / {x['paraphrase_retrieved']:.0%}", x["chat_context_tokens"],
             x["seconds_per_answer"], x["seconds_per_write"]] for x in r["retrieval"].values()]
    a = r["agentmem"]
    rows.append([f"agentmem (weights, batches of {a['write_batch']})", a["raw"], a["chat"], a["paraphrase"], "-",
                 a["context_tokens"], a["seconds_per_answer"], a["seconds_per_write"]])
    return _table(["memory", "raw recall", "chat recall", "paraphrase recall", "right fact retrieved (chat / para)",
                   "extra context tokens per answer", "s per answer", "s per write"], rows) + \
        f"\n\nEmbedding model: {r['embedder']}."


TABLES = {"capacity": lambda r: _sequential_table(r, "recall"), "retention": lambda r: _sequential_table(r, "first_batch"),
          "ablation": _ablation_table, "sweeps": _sweeps_table, "week": _week_table,
          "adapter-capacity": _adapter_capacity_table, "counterfact": _counterfact_table,
          "retrieval": _retrieval_table}


# -- plots ------------------------------------------------------------------

def _lines(ax, runs: dict[str, list[dict]], key: str, xlabel: str, title: str, second: str = "raw") -> None:
    """Chat recall (solid) and `second` recall (dashed, same colour) against facts, one pair of lines per run."""
    for m, rows in runs.items():
        xs = [x["facts"] for x in rows]
        line, = ax.plot(xs, [x[key]["chat"] for x in rows], marker="o", label=f"{MODES.get(m, m)}: chat")
        ax.plot(xs, [x[key][second] for x in rows], marker="s", ls="--", color=line.get_color(),
                label=f"{MODES.get(m, m)}: {second}")
    ax.set(xlabel=xlabel, ylabel="recall", ylim=(-0.05, 1.05), title=title)
    ax.legend(fontsize=8)


def _bars(ax, labels: list[str], series: dict[str, list], ylabel: str, title: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(labels))], [v or 0 for v in values], width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))], labels, fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)


def _night_time(ax, days: list[dict]) -> None:
    """A night's seconds, part by part, against the facts the adapter already held when it began."""
    xs = [_held(d) if _held(d) is not None else d["facts_so_far"] for d in days]
    label = "facts held at nightfall" if all(_held(d) is not None for d in days) else "facts so far"
    bottom = [0.0] * len(days)
    names = list(dict.fromkeys(k for d in days for k, v in d.get("night_parts", {}).items() if "seconds" in v))
    for name in names:
        secs = [d.get("night_parts", {}).get(name, {}).get("seconds", 0.0) for d in days]
        ax.bar(xs, secs, bottom=bottom, width=max(max(xs) / (3 * len(xs)), 1), label=name)
        bottom = [b + s for b, s in zip(bottom, secs)]
    ax.plot(xs, [d["night_seconds"] for d in days], marker="o", color="black", label="whole night")
    ax.set(xlabel=label, ylabel="seconds", ylim=(0, None), title="a night's time")
    ax.legend(fontsize=7)


def plot(r: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suite = r["suite"]
    panels = {"sweeps": 2, "week": 3}.get(suite, 1)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels if panels > 1 else 6, 4))
    if suite == "capacity":
        _lines(axes, r["runs"], "recall", "facts edited (sequential batches)", "recall of every fact so far")
    elif suite == "retention":
        _lines(axes, r["runs"], "first_batch", "facts edited (sequential batches)", "recall of the first batch")
    elif suite == "ablation":
        names = list(r["systems"])
        _bars(axes, names, {"chat right away": [s["recall_right_away"]["chat"] for s in r["systems"].values()],
                            "chat after a night": [(s["recall_after_sleep"] or {}).get("chat") for s in r["systems"].values()]},
              "chat recall", "dual-system ablation")
    elif suite == "sweeps":
        for ax, key, xs in ((axes[0], "lambda", r["lambda"]), (axes[1], "cov_samples", r["cov_samples"])):
            if xs:
                ax.plot([x[key] for x in xs], [x["recall"]["chat"] for x in xs], marker="o", label="chat recall")
                ax.plot([x[key] for x in xs], [x["probes_unchanged"] for x in xs], marker="s", label="probes unchanged")
                ax.plot([x[key] for x in xs], [x["perplexity_vs_base"] for x in xs], marker="^", label="perplexity vs base")
                ax.set_xscale("log")
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set(xlabel=key.replace("_", " "), title=f"sweep: {key.replace('_', ' ')}")
    elif suite == "week":
        days = [d["day"] for d in r["days"]]
        for key in ("chat_recall", "paraphrase_recall", "raw_recall", "dissolved"):
            axes[0].plot(days, [d[key] for d in r["days"]], marker="o", label=key.replace("_", " "))
        alone = [(d["day"], d["consolidated"]["chat"]) for d in r["days"]
                 if (d.get("consolidated") or {}).get("chat") is not None]
        if alone:
            axes[0].plot(*zip(*alone), marker="s", ls="--", label="chat, edit dissolved")
        axes[0].set(xlabel="day", ylim=(-0.05, 1.05), title="recall after each night")
        axes[0].legend(fontsize=8)
        axes[1].plot(days, [d["perplexity_vs_base"] for d in r["days"]], marker="o")
        axes[1].set(xlabel="day", ylabel="perplexity vs base", title="perplexity drift")
        _night_time(axes[2], r["days"])
    elif suite == "adapter-capacity":
        ranks = sorted({p["rank"] for p in r["points"]})
        _lines(axes, {f"rank {k}": sorted((p for p in r["points"] if p["rank"] == k), key=lambda p: p["facts"])
                      for k in ranks}, "recall", "facts learned in one night", "what one adapter holds, asked alone",
               second="paraphrase")
    elif suite == "counterfact":
        modes = list(r["modes"])
        _bars(axes, [MODES.get(m, m) for m in modes],
              {k: [r["modes"][m][k] for m in modes] for k in ("efficacy", "generalisation", "specificity")},
              "score", f"CounterFact, {r['sizes']['records']} records")
    elif suite == "retrieval":
        labels = [f"retrieval top {x['k']}" for x in r["retrieval"].values()] + ["agentmem"]
        rows = list(r["retrieval"].values()) + [r["agentmem"]]
        _bars(axes, labels, {"chat recall": [x["chat"] for x in rows], "paraphrase recall": [x["paraphrase"] for x in rows]},
              "recall", "same facts: in the prompt or in the weights")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


# -- the page ---------------------------------------------------------------

def _machine(m: dict) -> str:
    flags = f" ({', '.join(m['cpu_flags'])})" if m.get("cpu_flags") else ""
    return (f"{m['cpu']}{flags}; {m['cores_allowed']} of {m['cores']} cores allowed, {m['torch_threads']} torch threads "
            f"(OMP_NUM_THREADS={m['omp_num_threads']}), nice {m['nice']}; torch {m['torch']}; code {m.get('git')}; "
            f"finished {m['finished']}")


def section(r: dict, json_name: str, png_link: str | None) -> str:
    suite = r["suite"]
    parts = [f"## {TITLES.get(suite, suite)}", "", TABLES[suite](r), ""]
    if png_link:
        parts += [f"![{suite}]({png_link})", ""]
    parts += [f"Command: `{r['command']} --out docs/results/{json_name}`", "",
              f"Machine: {_machine(r['machine'])}.", "",
              f"Sizes run: `{json.dumps(r['sizes'])}`. The issue's full sizes are each option's default: "
              f"`agentmem eval {suite} --out docs/results/{json_name}`.", ""]
    return "\n".join(parts)


def load_results(results_dir: Path) -> list[tuple[str, dict]]:
    found = []
    for p in sorted(Path(results_dir).glob("*.json")):
        r = json.loads(p.read_text())
        if isinstance(r, dict) and r.get("suite") in TABLES:
            found.append((p.name, r))
    return sorted(found, key=lambda x: (ORDER.index(x[1]["suite"]), x[0]))


def render(results_dir: Path, doc: Path) -> str:
    """The text of `doc` for every suite JSON in `results_dir` (plots are linked when their PNG is beside it)."""
    results_dir = Path(results_dir)
    rel = Path(os.path.relpath(results_dir, Path(doc).parent)).as_posix()
    parts = ["# Results", "",
             "Generated by `agentmem eval SUITE --out docs/results/SUITE.json` (or `agentmem eval results` to "
             "re-render): do not edit by hand. Every section states the sizes it was run at, the exact command "
             "and the machine.", ""]
    notes = results_dir / "notes.md"
    if notes.exists():
        parts += [notes.read_text().strip(), ""]
    for name, r in load_results(results_dir):
        png = Path(name).with_suffix(".png").name
        parts.append(section(r, name, f"{rel}/{png}" if (results_dir / png).exists() else None))
    return "\n".join(parts).rstrip() + "\n"


def write(result: dict, out: Path, doc: Path) -> None:
    """Write `result` to `out`, its plot beside it, and regenerate `doc` from every JSON in out's folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    doc.write_text(render(out.parent, doc))

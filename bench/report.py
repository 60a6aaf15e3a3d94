#!/usr/bin/env python3
"""report.py: turns the JSON parts bench/harness.py wrote into plots and
docs/benchmarks.md.

    python3 bench/report.py OUT_DIR_OR_FILES... [--md docs/benchmarks.md] [--figs docs/benchmarks]

One figure per (block, variant, mode, dtype): GB/s (or TFLOP/s for
attention) by shape, every implementation in the same plot, the copy
bandwidth of the run as a line. The markdown gives the run's environment,
the copy bandwidth, one table per figure with tilejit's ratio to the copy
bandwidth and to the best peer at each shape, the correctness checks that
failed, the errors, the latency table, and a summary of where tilejit wins
and where it does not yet, computed from the numbers (nothing in it is
written by hand). Without matplotlib the figures are skipped with a warning
and the markdown is still written. Smoke-run files (*-smoke*.json) are used
only when no full-run file of the part is given.
"""
import argparse
import glob
import json
import math
import os
import re
import sys

IMPL_ORDER = ["tilejit", "torch", "torch.compile", "triton", "sdpa", "flex", "flex (same blocks)",
              "flex (element ±512)", "copy (same size)"]
SAME_COPY = "copy (same size)"   # y.copy_(x) of the same tensor (bench/harness.py): a ceiling, not a peer


def load_parts(paths):
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    parts = {}
    for f in files:
        with open(f) as fh:
            d = json.load(fh)
        if "part" not in d:
            continue
        name = d["part"]
        smoke = bool(d.get("smoke"))
        have = parts.get(name)
        if have and not have[0]["smoke"] and smoke:
            continue                      # a full run beats a smoke run
        if have and have[0]["smoke"] == smoke:
            have.append(d)                # a part split over several files (--tag)
        else:
            parts[name] = [d]
    return parts


def shape_str(s):
    return "x".join(str(v) for v in s)


def fmt(v, digits=0):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def slug(*parts):
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(str(p) for p in parts)).strip("-").lower()


def impl_key(name):
    return (IMPL_ORDER.index(name) if name in IMPL_ORDER else len(IMPL_ORDER), name)


def failed_checks(parts):
    """(block, variant, mode, dtype, shape, impl) of every failed check: such
    a result is marked and never counts as the best peer."""
    return {(c["block"], c["variant"], c["mode"], c["dtype"], shape_str(c["shape"]), c["impl"])
            for ds in parts.values() for d in ds for c in d.get("checks", []) if not c["ok"]}


def groups_of(parts):
    """{(block, variant, mode, dtype): {"metric", "copy", "shapes": [...], "impls": [...], "v": {(shape, impl): row}}}"""
    out = {}
    for name in sorted(parts):
        for d in parts[name]:
            for r in d.get("rows", []):
                key = (r["block"], r["variant"], r["mode"], r["dtype"])
                g = out.setdefault(key, {"metric": r["metric"], "copy": d.get("copy_gbps"), "shapes": [], "impls": [],
                                         "v": {}})
                sh = shape_str(r["shape"])
                if sh not in g["shapes"]:
                    g["shapes"].append(sh)
                if r["impl"] not in g["impls"]:
                    g["impls"].append(r["impl"])
                g["v"][(sh, r["impl"])] = r
    bad = failed_checks(parts)
    for key, g in out.items():
        g["impls"].sort(key=impl_key)
        g["bad"] = {(sh, i) for (b, v, m, dt, sh, i) in bad if (b, v, m, dt) == key}
    return out


def ratios(g):
    """Per shape: (tilejit value, best peer name, best peer value, tilejit / copy or None,
    tilejit / the same-size copy or None)."""
    res = []
    for sh in g["shapes"]:
        t = g["v"].get((sh, "tilejit"))
        peers = [(g["v"][(sh, i)]["value"], i) for i in g["impls"]
                 if i not in ("tilejit", SAME_COPY) and (sh, i) in g["v"] and (sh, i) not in g["bad"]]
        best = max(peers) if peers else (None, None)
        tv = t["value"] if t else None
        of_copy = tv / g["copy"] if tv is not None and g["metric"] == "GB/s" and g["copy"] else None
        same = g["v"].get((sh, SAME_COPY))
        of_same = tv / same["value"] if tv is not None and same and same["value"] else None
        res.append((sh, tv, best[1], best[0], of_copy, of_same))
    return res


def plot(key, g, figdir, plt):
    block, variant, mode, dtype = key
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    xs = list(range(len(g["shapes"])))
    for impl in g["impls"]:
        ys = [g["v"][(sh, impl)]["value"] if (sh, impl) in g["v"] else float("nan") for sh in g["shapes"]]
        if impl == SAME_COPY:   # a ceiling, drawn like the copy line
            ax.plot(xs, ys, color="gray", linestyle=":", marker=".", linewidth=1, label=impl)
            continue
        ax.plot(xs, ys, marker="o", linewidth=2.4 if impl == "tilejit" else 1.3, label=impl)
    if g["metric"] == "GB/s" and g["copy"]:
        ax.axhline(g["copy"], color="gray", linestyle="--", linewidth=1, label=f"copy {g['copy']:.0f} GB/s")
    ax.set_xticks(xs)
    ax.set_xticklabels(g["shapes"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(g["metric"])
    ax.set_ylim(bottom=0)
    ax.set_title(f"{block} {variant} {mode} {dtype}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = slug(block, variant, mode, dtype) + ".png"
    fig.savefig(os.path.join(figdir, name))
    plt.close(fig)
    return name


def tilejit_failed(g, sh):
    """True when tilejit's own result at shape sh failed its check (†)."""
    return (sh, "tilejit") in g["bad"]


def summary(groups):
    """Lines computed from the data: per (block, mode, dtype), where tilejit
    is ahead of every peer and where it is behind, with the ratios. Shapes
    where tilejit's own result failed its check count neither as a win nor
    as a loss, and are left out of the geometric means."""
    lines, wins, losses = [], 0, 0
    for key in sorted(groups):
        g = groups[key]
        rs = [r for r in ratios(g) if r[1] is not None and r[3] and not tilejit_failed(g, r[0])]
        if not rs:
            continue
        rel = [(sh, tv / bv, bn) for sh, tv, bn, bv, _, _ in rs]
        ahead = [r for r in rel if r[1] >= 1.0]
        behind = [r for r in rel if r[1] < 1.0]
        wins += len(ahead)
        losses += len(behind)
        geo = math.exp(sum(math.log(r[1]) for r in rel) / len(rel))
        block, variant, mode, dtype = key
        s = (f"- **{block} {variant} {mode} {dtype}**: ahead of every peer at {len(ahead)}/{len(rel)} shapes; "
             f"geometric mean {geo:.2f}x the best peer")
        if behind:
            worst = sorted(behind, key=lambda r: r[1])[:3]
            s += "; behind at " + ", ".join(f"{sh} ({r:.2f}x {bn})" for sh, r, bn in worst)
        if ahead and len(ahead) < len(rel):
            best = sorted(ahead, key=lambda r: -r[1])[:2]
            s += "; best at " + ", ".join(f"{sh} ({r:.2f}x {bn})" for sh, r, bn in best)
        lines.append(s + ".")
    head = [f"Over all {wins + losses} (block, shape) points with a peer: tilejit is ahead of the best peer at "
            f"{wins} and behind at {losses}."] if wins + losses else ["No comparisons in the data."]
    return head + [""] + lines


def render(parts, figdir_rel, figs):
    groups = groups_of(parts)
    first = next(iter(next(iter(parts.values())))) if parts else {}
    env = first.get("env", {})
    md = ["# Benchmarks", "",
          "Generated by `bench/report.py` from the JSON of `bench/harness.py` (one process per part, tilejit and "
          "its peers on the same tensors). Do not edit by hand: rerun the harness and the report.", "",
          "| | |", "|---|---|"]
    for k, label in (("date", "date"), ("gpu", "GPU"), ("driver", "driver"), ("cuda", "CUDA (torch)"),
                     ("torch", "torch"), ("triton", "triton"), ("tilejit", "tilejit"), ("python", "python")):
        if k in env:
            md.append(f"| {label} | {env[k]} |")
    for name in sorted(parts):
        for d in parts[name]:
            if d.get("copy_gbps"):
                smoke = " (smoke run)" if d.get("smoke") else ""
                md.append(f"| copy bandwidth, part {name}{smoke} | {d['copy_gbps']:.0f} GB/s (y.copy_(x), "
                          f"{d.get('copy_mib', 64)} MiB fp16) |")
            when = d.get("env", {}).get("date")
            if when and when != env.get("date"):   # a part from another run
                md.append(f"| date, part {name} | {when} |")
    tol = first.get("tolerance")
    md += ["", "Method: `triton.testing.do_bench` medians, L2 flushed before every repetition; tilejit is called "
           "once untimed first (it tunes its tile config on the first call of a shape). GB/s counts the tensor "
           "passes a fused implementation cannot avoid (2 for a forward pass, 4 for fwd+bwd, 5 for dropout "
           "fwd+bwd with an activation); attention counts 4·D flops per live score element (×3.5 for fwd+bwd). "
           "*of copy* is tilejit's GB/s over the copy bandwidth of the same run; *of same-size copy* over "
           "y.copy_(x) of the same tensor, timed the same way (for small tensors launch and tail costs weigh on "
           "both alike; it is not a peer); *vs best* is tilejit over the "
           "fastest peer at that shape whose output agreed with the reference (a † marks a result that failed "
          "its correctness check: see the list at the end)."]
    if tol:
        md += ["", f"Correctness before timing: {tol.get('rule', '')}; tolerances {tol.get('fwd')}, attention "
               f"{tol.get('attention')}."]
    md += ["", "## Where tilejit wins and where it doesn't yet", ""] + summary(groups)

    for key in sorted(groups):
        g = groups[key]
        block, variant, mode, dtype = key
        md += ["", f"## {block} {variant} {mode} {dtype}", ""]
        if key in figs:
            md += [f"![{block} {variant} {mode} {dtype}]({figdir_rel}/{figs[key]})", ""]
        unit = g["metric"]
        has_same = SAME_COPY in g["impls"]
        md.append("| shape | " + " | ".join(f"{i} {unit}" for i in g["impls"]) + " | of copy |"
                  + (" of same-size copy |" if has_same else "") + " vs best |")
        md.append("|---|" + "---:|" * (len(g["impls"]) + 2 + has_same))
        for sh, tv, bn, bv, of_copy, of_same in ratios(g):
            cells = [fmt(g["v"][(sh, i)]["value"], 0 if unit == "GB/s" else 1) + ("†" if (sh, i) in g["bad"] else "")
                     if (sh, i) in g["v"] else "–" for i in g["impls"]]
            vs = f"{tv / bv:.2f}x {bn}" if tv is not None and bv else "–"
            oc = f"{of_copy:.1%}" if of_copy is not None else "–"
            os_ = (f" {of_same:.1%} |" if of_same is not None else " – |") if has_same else ""
            md.append(f"| {sh} | " + " | ".join(cells) + f" | {oc} |{os_} {vs} |")

    lat = [r for d in parts.get("latency", []) for r in d.get("latency", [])]
    if lat:
        md += ["", "## Launch overhead and JIT latency", "", "| what | implementation | value | note |",
               "|---|---|---:|---|"]
        for r in lat:
            md.append(f"| {r['what']} | {r['impl']} | {r['value']:.{3 if r['unit'] == 'us' else 1}f} {r['unit']} | "
                      f"{r.get('note', '')} |")

    bad = [c for ds in parts.values() for d in ds for c in d.get("checks", []) if not c["ok"]]
    nchecks = sum(len(d.get("checks", [])) for ds in parts.values() for d in ds)
    md += ["", "## Correctness checks", "", f"{nchecks - len(bad)} of {nchecks} checks agree."]
    if bad:
        md += ["", "| block | variant | mode | dtype | shape | impl | what | error | tolerance |",
               "|---|---|---|---|---|---|---|---:|---:|"]
        for c in bad:
            md.append(f"| {c['block']} | {c['variant']} | {c['mode']} | {c['dtype']} | {shape_str(c['shape'])} | "
                      f"{c['impl']} | {c.get('what', '')} | {c['max_err']:.3g} | {c['tol']:g} |")
        own = sorted({(c["block"], c["variant"], c["mode"], c["dtype"], shape_str(c["shape"])) for c in bad
                      if c["impl"] == "tilejit"})
        if own:
            md += ["", f"tilejit's own result failed its check at {len(own)} (block, shape) point"
                   f"{'' if len(own) == 1 else 's'}: " + ", ".join(" ".join(o) for o in own) +
                   ". These are left out of the win counts and geometric means of the summary."]
    errs = [(name, e) for name, ds in parts.items() for d in ds for e in d.get("errors", [])]
    md += ["", "## Errors", "", f"{len(errs)} cases failed to run." if errs else "No case failed to run."]
    for name, e in errs:
        md.append(f"- {name}: `{e['where']}`: {e['error']}")
    return "\n".join(md) + "\n", groups


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="JSON files or directories of them")
    ap.add_argument("--md", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs",
                                                 "benchmarks.md"))
    ap.add_argument("--figs", default=None, help="figure directory (default: benchmarks/ beside the markdown)")
    ap.add_argument("--no-plots", action="store_true", help="draw nothing; link the figures already in --figs")
    args = ap.parse_args(argv)
    parts = load_parts(args.inputs)
    if not parts:
        print("report: no harness JSON found in " + " ".join(args.inputs), file=sys.stderr)
        return 1
    md_dir = os.path.dirname(os.path.abspath(args.md))
    figdir = args.figs or os.path.join(md_dir, "benchmarks")
    figs = {}
    plt = None
    if not args.no_plots:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("report: warning: matplotlib is not installed; writing the markdown without figures",
                  file=sys.stderr)
    if plt is not None:
        os.makedirs(figdir, exist_ok=True)
        for key, g in groups_of(parts).items():
            figs[key] = plot(key, g, figdir, plt)
    else:
        # No new plots: link the ones already in figdir (made with the same
        # JSON on a machine with matplotlib).
        for key in groups_of(parts):
            name = slug(*key) + ".png"
            if os.path.exists(os.path.join(figdir, name)):
                figs[key] = name
    text, _ = render(parts, os.path.relpath(figdir, md_dir), figs)
    os.makedirs(md_dir, exist_ok=True)
    with open(args.md, "w") as f:
        f.write(text)
    print(f"report: wrote {args.md} ({len(figs)} figures in {figdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summaries (mean and p50/p90/p95/p99, goodput against SLOs, per-pod and
per-strategy breakdowns) and a self-contained HTML report with SVG charts."""
import html
import json
import math

METRICS = (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"), ("e2e_ms", "E2E ms"))
PCTS = (50, 90, 95, 99)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def stats(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    out = {"n": len(v), "mean": sum(v) / len(v)}
    for p in PCTS:
        out[f"p{p}"] = percentile(v, p)
    return out


def meets(rec, slo):
    if rec.get("status") != 200:
        return False
    for key, limit in slo.items():
        v = rec.get(key)
        if v is None or v > limit:
            return False
    return True


def summarize(records, slo=None):
    """The numbers of one run. slo: e.g. {"ttft_ms": 500, "tpot_ms": 50}."""
    slo = slo or {}
    ok = [r for r in records if r.get("status") == 200]
    starts = [r["dispatch_s"] for r in records if r.get("dispatch_s") is not None]
    ends = [r["dispatch_s"] + (r.get("e2e_ms") or 0) / 1000.0 for r in records if r.get("dispatch_s") is not None]
    span = (max(ends) - min(starts)) if starts else 0.0
    out_tokens = sum(r.get("completion_tokens") or 0 for r in ok)
    in_tokens = sum(r.get("prompt_tokens") or 0 for r in ok)
    s = {"requests": len(records), "ok": len(ok), "errors": len(records) - len(ok), "duration_s": span,
         "requests_per_s": len(ok) / span if span > 0 else 0.0,
         "output_tokens_per_s": out_tokens / span if span > 0 else 0.0,
         "prompt_tokens": in_tokens, "output_tokens": out_tokens,
         "dispatch_lag_ms": stats(r.get("dispatch_lag_ms") for r in records)}
    for key, _ in METRICS:
        if key == "itl_ms":
            s[key] = stats(g for r in ok for g in (r.get("itl_ms") or []))
        else:
            s[key] = stats(r.get(key) for r in ok)
    if slo:
        good = sum(1 for r in records if meets(r, slo))
        s["goodput"] = {"slo": slo, "fraction": good / len(records) if records else 0.0,
                        "requests_per_s": good / span if span > 0 else 0.0}
    statuses = {}
    for r in records:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    s["statuses"] = statuses
    s["per_pod"] = _breakdown(ok, "pod")
    s["per_strategy"] = _breakdown(records, "strategy")
    return s


def _breakdown(records, key):
    groups = {}
    for r in records:
        groups.setdefault(str(r.get(key)), []).append(r)
    out = {}
    for k, rs in sorted(groups.items()):
        ok = [r for r in rs if r.get("status") == 200]
        t = stats(r.get("ttft_ms") for r in ok)
        e = stats(r.get("e2e_ms") for r in ok)
        out[k] = {"requests": len(rs), "ok": len(ok), "ttft_mean_ms": t and t["mean"], "e2e_mean_ms": e and e["mean"],
                  "output_tokens": sum(r.get("completion_tokens") or 0 for r in ok)}
    return out


def _fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def format_summary(s, title=""):
    lines = []
    if title:
        lines.append(title)
    lines.append(f"requests {s['requests']}  ok {s['ok']}  errors {s['errors']}  statuses {s['statuses']}")
    lines.append(f"duration {s['duration_s']:.2f} s  throughput {s['requests_per_s']:.2f} req/s, "
                 f"{s['output_tokens_per_s']:.1f} output tok/s  (prompt {s['prompt_tokens']}, output {s['output_tokens']} tokens)")
    lines.append(f"{'':10}{'mean':>10}{'p50':>10}{'p90':>10}{'p95':>10}{'p99':>10}{'n':>8}")
    for key, label in METRICS + (("dispatch_lag_ms", "lag ms"),):
        st = s.get(key)
        if st:
            lines.append(f"{label:10}" + "".join(f"{_fmt(st[k]):>10}" for k in ("mean", "p50", "p90", "p95", "p99"))
                         + f"{st['n']:>8}")
    if "goodput" in s:
        g = s["goodput"]
        slo = ", ".join(f"{k} <= {v}" for k, v in g["slo"].items())
        lines.append(f"goodput ({slo}): {g['fraction'] * 100:.1f}% of requests, {g['requests_per_s']:.2f} req/s")
    if s["per_pod"]:
        lines.append("per pod:")
        for pod, p in s["per_pod"].items():
            lines.append(f"  {pod:24} {p['requests']:>6} requests  TTFT mean {_fmt(p['ttft_mean_ms'])} ms  "
                         f"E2E mean {_fmt(p['e2e_mean_ms'])} ms")
    if len(s["per_strategy"]) > 1:
        lines.append("per strategy:")
        for k, p in s["per_strategy"].items():
            lines.append(f"  {k:24} {p['requests']:>6} requests  TTFT mean {_fmt(p['ttft_mean_ms'])} ms")
    return "\n".join(lines)


# --- HTML ------------------------------------------------------------------

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
W, H, PAD = 640, 300, 48


def _axes(xmax, ymax, xlabel, ylabel):
    parts = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
             f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
             f'<text x="{W // 2}" y="{H - 8}" text-anchor="middle" font-size="12">{html.escape(xlabel)}</text>',
             f'<text x="14" y="{H // 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {H // 2})">{html.escape(ylabel)}</text>']
    for i in range(5):
        fx, fy = i / 4, i / 4
        x = PAD + fx * (W - 10 - PAD)
        y = H - PAD - fy * (H - PAD - 10)
        parts.append(f'<text x="{x:.0f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{xmax * fx:.3g}</text>')
        parts.append(f'<text x="{PAD - 4}" y="{y + 3:.0f}" text-anchor="end" font-size="10">{ymax * fy:.3g}</text>')
    return parts


def _xy(x, y, xmax, ymax):
    return PAD + x / xmax * (W - 10 - PAD), H - PAD - y / ymax * (H - PAD - 10)


def _legend(labels):
    return "".join(f'<span style="color:{COLORS[i % len(COLORS)]};margin-right:1em">&#9632; {html.escape(l)}</span>'
                   for i, l in enumerate(labels))


def svg_cdf(runs, key, label):
    series = {name: sorted(r[key] for r in recs if r.get(key) is not None) for name, recs in runs.items()}
    xmax = max((v[-1] for v in series.values() if v), default=1.0) or 1.0
    parts = _axes(xmax, 1.0, label, "fraction of requests")
    for i, (name, v) in enumerate(series.items()):
        if not v:
            continue
        step = max(1, len(v) // 400)
        pts = [_xy(x, (j + 1) / len(v), xmax, 1.0) for j, x in enumerate(v) if j % step == 0 or j == len(v) - 1]
        parts.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="1.5" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    return f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def svg_over_time(runs, key, label):
    pts_by = {name: [(r["dispatch_s"], r[key]) for r in recs if r.get(key) is not None and r.get("dispatch_s") is not None]
              for name, recs in runs.items()}
    allp = [p for v in pts_by.values() for p in v]
    xmax = max((p[0] for p in allp), default=1.0) or 1.0
    ymax = max((p[1] for p in allp), default=1.0) or 1.0
    parts = _axes(xmax, ymax, "dispatch time s", label)
    for i, (name, v) in enumerate(pts_by.items()):
        step = max(1, len(v) // 1500)
        for j, (x, y) in enumerate(v):
            if j % step:
                continue
            cx, cy = _xy(x, y, xmax, ymax)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="1.6" fill="{COLORS[i % len(COLORS)]}" fill-opacity="0.6"/>')
    return f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def svg_pods(runs):
    counts = {name: {} for name in runs}
    pods = set()
    for name, recs in runs.items():
        for r in recs:
            if r.get("status") == 200:
                counts[name][str(r.get("pod"))] = counts[name].get(str(r.get("pod")), 0) + 1
                pods.add(str(r.get("pod")))
    pods = sorted(pods)
    ymax = max((c for v in counts.values() for c in v.values()), default=1) or 1
    parts = _axes(len(pods) or 1, ymax, "pod", "requests served")
    group_w = (W - 10 - PAD) / max(1, len(pods))
    bar_w = group_w * 0.8 / max(1, len(runs))
    for pi, pod in enumerate(pods):
        for ri, name in enumerate(runs):
            c = counts[name].get(pod, 0)
            x = PAD + pi * group_w + group_w * 0.1 + ri * bar_w
            h = c / ymax * (H - PAD - 10)
            parts.append(f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[ri % len(COLORS)]}"><title>{html.escape(pod)}: {c}</title></rect>')
        parts.append(f'<text x="{PAD + pi * group_w + group_w / 2:.0f}" y="{H - PAD + 26}" text-anchor="middle" '
                     f'font-size="9">{html.escape(pod[-12:])}</text>')
    return f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def html_report(runs, path, title="Switchboard benchmark", summaries=None, table_text=None, params=None):
    """runs: {label: records}. Writes one self-contained HTML file."""
    summaries = summaries or {name: summarize(recs) for name, recs in runs.items()}
    legend = _legend(list(runs))
    body = [f"<h1>{html.escape(title)}</h1>"]
    if params:
        body.append("<h2>Workload</h2><pre>" + html.escape(json.dumps(params, indent=2)) + "</pre>")
    if table_text:
        body.append("<h2>Comparison</h2><pre>" + html.escape(table_text) + "</pre>")
    body.append(f"<h2>TTFT distribution</h2><div>{legend}</div>{svg_cdf(runs, 'ttft_ms', 'TTFT ms')}")
    body.append(f"<h2>End-to-end latency over time</h2><div>{legend}</div>{svg_over_time(runs, 'e2e_ms', 'E2E ms')}")
    body.append(f"<h2>TTFT over time</h2><div>{legend}</div>{svg_over_time(runs, 'ttft_ms', 'TTFT ms')}")
    body.append(f"<h2>Load per pod</h2><div>{legend}</div>{svg_pods(runs)}")
    for name, s in summaries.items():
        body.append(f"<h2>{html.escape(name)}</h2><pre>{html.escape(format_summary(s))}</pre>")
    doc = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
           "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}pre{background:#f6f6f6;padding:1em;"
           "overflow-x:auto}svg{background:#fff;border:1px solid #ddd}</style></head><body>"
           + "\n".join(body) + "</body></html>")
    with open(path, "w") as f:
        f.write(doc)
    return path

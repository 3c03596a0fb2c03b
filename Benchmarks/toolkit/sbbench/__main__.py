"""Command line: python3 -m sbbench (or scripts/bench) dataset|workload|run|report ..."""
import argparse
import asyncio
import json
import os
import random
import sys

from . import client as client_mod
from . import datasets, report, workloads


def _slo(args):
    slo = {}
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        v = getattr(args, f"slo_{key}", None)
        if v is not None:
            slo[key] = v
    return slo


def _add_slo(p):
    g = p.add_argument_group("goodput SLOs (a request is good when it meets all given)")
    g.add_argument("--slo-ttft-ms", type=float)
    g.add_argument("--slo-tpot-ms", type=float)
    g.add_argument("--slo-e2e-ms", type=float)


def cmd_dataset(args):
    if args.kind == "synthetic-prefix":
        params = dict(prompt_length=args.prompt_length, prompt_length_std=args.prompt_length_std,
                      shared_proportion=args.shared_proportion, shared_proportion_std=args.shared_proportion_std)
        if args.preset:
            params.update(datasets.PREBLE_PRESETS[args.preset])
        rows = datasets.synthetic_prefix(num_prefixes=args.num_prefixes, samples_per_prefix=args.samples_per_prefix,
                                         seed=args.seed, **params)
    elif args.kind == "multiturn":
        rows = datasets.multiturn(num_sessions=args.sessions, turns_mean=args.turns, turns_std=args.turns_std,
                                  prompt_length=args.prompt_length, prompt_length_std=args.prompt_length_std,
                                  system_prefix_length=args.system_prefix, seed=args.seed)
    elif args.kind == "sharegpt":
        rows = datasets.from_sharegpt(args.input, limit=args.limit)
    else:
        rows = datasets.from_client_log(args.input)
    datasets.write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)


def cmd_workload(args):
    rng = random.Random(args.seed)
    if args.kind in ("mooncake", "azure"):
        common = dict(time_scale=args.time_scale, start_ms=args.start_ms, duration_ms=args.duration_ms,
                      max_requests=args.max_requests, max_output=args.max_output)
        rows = workloads.mooncake(args.trace, **common) if args.kind == "mooncake" else \
            workloads.azure(args.trace, seed=args.seed, **common)
    else:
        if not args.dataset:
            sys.exit(f"workload {args.kind}: --dataset is required")
        data = datasets.read_jsonl(args.dataset)
        if args.duration is None and args.count is None:
            args.count = len(data)
        if args.kind == "constant":
            t = workloads.constant_arrivals(args.rate, args.duration, args.count)
        elif args.kind == "poisson":
            t = workloads.poisson_arrivals(rng, args.rate, args.duration, args.count)
        elif args.kind == "sinusoidal":
            t = workloads.sinusoidal_arrivals(rng, args.rate, args.amplitude, args.period, args.duration, args.count)
        else:
            t = workloads.step_arrivals(rng, workloads.parse_steps(args.steps), args.duration, args.count)
        rows = workloads.from_dataset(data, t, max_tokens=args.max_tokens, think_ms=args.think_ms)
    datasets.write_jsonl(rows, args.out)
    span = rows[-1]["timestamp_ms"] / 1000 if rows else 0
    print(f"wrote {len(rows)} requests over {span:.1f} s to {args.out}", file=sys.stderr)


def cmd_run(args):
    reqs = datasets.read_jsonl(args.workload)
    if args.max_requests:
        reqs = reqs[: args.max_requests]
    if args.time_scale != 1.0:
        for r in reqs:
            r["timestamp_ms"] *= args.time_scale
    headers = dict(h.split(":", 1) for h in args.header)
    c = client_mod.Client(args.url, args.model, api=args.api, stream=not args.no_stream, strategy=args.strategy,
                          timeout=args.timeout, headers={k.strip(): v.strip() for k, v in headers.items()},
                          record_prompts=args.record_prompts)
    out = open(args.out, "w") if args.out else None

    def write(rec):
        if out:
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
    records = asyncio.run(client_mod.run(reqs, c, concurrency=args.concurrency, duration=args.duration,
                                         progress=not args.quiet, on_record=write))
    if out:
        out.close()
    s = report.summarize(records, _slo(args))
    print(report.format_summary(s, title=f"{args.workload} -> {args.url}"))
    if args.html:
        report.html_report({args.strategy or "run": records}, args.html, summaries={args.strategy or "run": s})
        print(f"HTML report: {os.path.abspath(args.html)}")
    return 0 if s["ok"] else 1


def cmd_report(args):
    runs = {os.path.basename(p): datasets.read_jsonl(p) for p in args.records}
    sums = {k: report.summarize(v, _slo(args)) for k, v in runs.items()}
    for k, s in sums.items():
        print(report.format_summary(s, title=k))
        print()
    if args.html:
        report.html_report(runs, args.html, summaries=sums)
        print(f"HTML report: {os.path.abspath(args.html)}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="sbbench", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("dataset", help="generate or convert a dataset (JSONL)")
    d.add_argument("kind", choices=["synthetic-prefix", "multiturn", "sharegpt", "from-log"])
    d.add_argument("input", nargs="?", help="input file (sharegpt, from-log)")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--preset", choices=sorted(datasets.PREBLE_PRESETS), help="Preble workload shape (synthetic-prefix)")
    d.add_argument("--num-prefixes", type=int, default=10)
    d.add_argument("--samples-per-prefix", type=int, default=20)
    d.add_argument("--prompt-length", type=float, default=1000)
    d.add_argument("--prompt-length-std", type=float, default=100)
    d.add_argument("--shared-proportion", type=float, default=0.9)
    d.add_argument("--shared-proportion-std", type=float, default=0.01)
    d.add_argument("--sessions", type=int, default=100, help="multiturn: conversations")
    d.add_argument("--turns", type=float, default=3.5, help="multiturn: mean turns per conversation")
    d.add_argument("--turns-std", type=float, default=2.0)
    d.add_argument("--system-prefix", type=int, default=0, help="multiturn: words of a system prefix shared by all")
    d.add_argument("--limit", type=int, help="sharegpt: conversations to keep")

    w = sub.add_parser("workload", help="arrival times + requests (JSONL)")
    w.add_argument("kind", choices=["constant", "poisson", "sinusoidal", "step", "mooncake", "azure"])
    w.add_argument("trace", nargs="?", help="trace file (mooncake, azure)")
    w.add_argument("--out", required=True)
    w.add_argument("--dataset", help="dataset JSONL (constant, poisson, sinusoidal, step)")
    w.add_argument("--rate", type=float, default=1.0, help="requests (or sessions) per second; the mean for sinusoidal")
    w.add_argument("--amplitude", type=float, default=0.5, help="sinusoidal: rate swing around the mean")
    w.add_argument("--period", type=float, default=60.0, help="sinusoidal: seconds per cycle")
    w.add_argument("--steps", default="0:1", help='step: "start_s:rate,..." e.g. "0:2,30:8,60:2"')
    w.add_argument("--duration", type=float, help="seconds of arrivals")
    w.add_argument("--count", type=int, help="arrivals (default: one per dataset row)")
    w.add_argument("--max-tokens", type=int, default=128, help="completion tokens per request (datasets)")
    w.add_argument("--think-ms", type=float, default=0.0, help="sessions: least time between turns")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--time-scale", type=float, default=1.0, help="traces: multiply timestamps (0.1 = 10x faster)")
    w.add_argument("--start-ms", type=float, default=0.0, help="traces: slice start")
    w.add_argument("--duration-ms", type=float, help="traces: slice length")
    w.add_argument("--max-requests", type=int, help="traces: at most this many")
    w.add_argument("--max-output", type=int, help="traces: cap max_tokens")

    r = sub.add_parser("run", help="send a workload and record every request")
    r.add_argument("--url", required=True, help="endpoint, e.g. http://127.0.0.1:10000")
    r.add_argument("--workload", required=True)
    r.add_argument("--model", default="tiny")
    r.add_argument("--api", choices=["chat", "completions"], default="chat")
    r.add_argument("--no-stream", action="store_true", help="non-streaming requests (no TTFT/ITL then)")
    r.add_argument("--strategy", help="routing-strategy header")
    r.add_argument("--header", action="append", default=[], help="extra 'name: value' header (repeatable)")
    r.add_argument("--concurrency", type=int, help="closed loop with N workers (default: open loop at timestamps)")
    r.add_argument("--duration", type=float, help="stop after N seconds (unfinished requests are cancelled)")
    r.add_argument("--time-scale", type=float, default=1.0)
    r.add_argument("--max-requests", type=int)
    r.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    r.add_argument("--out", help="records JSONL")
    r.add_argument("--html", help="write an HTML report here")
    r.add_argument("--record-prompts", action="store_true", help="keep prompts in the records (for from-log replay)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_slo(r)

    rp = sub.add_parser("report", help="summaries and an HTML report from records files")
    rp.add_argument("records", nargs="+")
    rp.add_argument("--html")
    _add_slo(rp)

    args = ap.parse_args(argv)
    return {"dataset": cmd_dataset, "workload": cmd_workload, "run": cmd_run, "report": cmd_report}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())

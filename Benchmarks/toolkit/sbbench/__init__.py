"""Switchboard's benchmark toolkit: datasets, workloads, an open-loop client
that records per-token latencies, summaries and HTML reports.

Prompt lengths are counted in words, which is what the simulator (vllm-sim)
counts as tokens. Against a real engine the token counts differ (a real
tokenizer splits words), and the client records the engine's own counts from
`usage`."""

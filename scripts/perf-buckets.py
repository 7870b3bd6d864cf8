#!/usr/bin/env python3
"""Splits a `perf script` dump of ens-images into the stages of a request.

Each sample is counted once, in the first stage (in the order below) whose frames appear in
its stack, so the shares add up to 100 %. Used for the profile in BENCHMARKS.md:

    perf record -e cpu-clock -F 2000 --call-graph fp -p "$(pgrep -f 'ens-images serve')" -- sleep 5
    perf script | scripts/perf-buckets.py
"""

import collections
import sys

STAGES = [
    ("nonce claims (group-committed writes)", ["claim_nonces", "nonces::", "sqlx_sqlite"]),
    ("DescribeImages: loading the page's images", ["reads::load_images"]),
    ("DescribeImages: counters and listing seeks", ["page_from_listings", "page_from_filters", "Reader::describe_images"]),
    ("AccessKey lookup", ["Reader::access_key"]),
    ("rendering the answer", ["render::render_success", "describe_images::response"]),
    ("request parsing and signature check", ["parse_call", "Credentials::verify", "sign::v3", "sign::v1"]),
    ("log line", ["tracing_subscriber", "tracing_core", "tracing::"]),
    ("HTTP write (hyper, kernel)", ["poll_write", "poll_flush"]),
    ("HTTP read (hyper, kernel)", ["poll_read"]),
    ("runtime scheduling and parking", ["park", "Context::run_task", "futex"]),
]


def main() -> None:
    counts = collections.Counter()
    total = 0
    for sample in sys.stdin.read().split("\n\n"):
        lines = sample.strip().split("\n")
        if len(lines) < 2:
            continue
        total += 1
        stack = "\n".join(lines[1:])
        stage = next((name for name, frames in STAGES if any(f in stack for f in frames)), "other")
        counts[stage] += 1
    for stage, count in counts.most_common():
        print(f"{100 * count / max(total, 1):5.1f} %  {stage}")
    print(f"({total} samples)")


if __name__ == "__main__":
    main()

"""`bench/profiles_bench.py --quick` runs end to end and prints its table: medians over its runs of
the consumer, the raw consume and the decode floor (sane figures asserted, no timing target)."""

from __future__ import annotations

import re

from support.bench import run_bench


def test_profiles_bench_quick(broker: str, dynamodb_local: str) -> None:
    out = run_bench(
        "profiles_bench",
        "--quick",
        "--viewers",
        "60",
        "--runs",
        "2",
        "--bootstrap-servers",
        broker,
        "--endpoint-url",
        dynamodb_local,
        timeout=300,
    )
    lines = out.splitlines()
    assert lines[0] == "| measure | value | target | met |"
    table = "\n".join(lines)
    for row in (
        "raw confluent-kafka consume",
        "Kafka → state",
        "DynamoDB writes",
        "memory per tracked viewer",
    ):
        assert row in table
    assert "(60 viewers)" in table and "| tracked viewers | 60 |" in table
    assert "figures: medians of 2 run(s)" in table
    floor = re.search(r"^\| decode floor .*? \| ([\d,]+) events/s \|", table, re.M)
    raw = re.search(r"^\| … raw consume, per CPU-second / share \| ([\d,]+) msg/s / (\d+)%", table, re.M)
    ratio = re.search(
        r"^\| … `lvp profiles` \(applied\) / decode floor \(CPU-time rates\) \| (\d+)% \|", table, re.M
    )
    committed = re.search(
        r"^\| `lvp profiles`: Kafka → committed after the final flush .*? \| ([\d,]+) events/s \|",
        table,
        re.M,
    )
    committed_ratio = re.search(
        r"^\| … `lvp profiles` \(committed\) / decode floor \(CPU-time rates\) \| (\d+)% \| ≥ 50% \|",
        table,
        re.M,
    )
    consumer = re.search(r"^\| `lvp profiles` on one core: .*? \| ([\d,]+) events/s \|", table, re.M)
    assert floor and raw and ratio and consumer and committed and committed_ratio, table
    rates = [int(x.replace(",", "")) for x in (floor[1], raw[1], consumer[1])]
    assert all(r > 0 for r in rates) and int(ratio[1]) > 0 and int(committed_ratio[1]) > 0, table
    # the final flush and commit cost CPU too: committed-after-flush is at most the applied rate
    assert 0 < int(committed[1].replace(",", "")) <= rates[2], table
    assert rates[0] < rates[1]  # decoding costs more than only consuming

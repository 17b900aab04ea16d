"""``detector bench``: throughput, latency and Redis cost of the detector, beside the Kafka ceiling.

One run measures, on the same events (the simulator's default scenario, sliced to the
size asked for) and the same broker and Redis:

- the ceiling: kafka-python consuming and decoding the topic, nothing else (``topic``);
- the machine's own speedup from one CPU-bound process to as many as workers (``parallel``);
- the detector as separate ``detector run`` processes in one consumer group, one worker
  and as many as asked (``throughput``), with Redis commands, round trips, memory and
  worker RSS (``redis_probe``, ``workers``);
- end-to-end latency at half the measured maximum (``latency``);
- ``detector replay`` and a naive one-event-per-batch baseline (``offline``).

``run.run_bench`` wires them in order; ``report`` writes JSON and Markdown.
"""

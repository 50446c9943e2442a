"""The prepared check for a lent GPU machine (README: GPUs): ``python3 -m bench.device_check``.

Why here, beside the benchmarks, and not under tests/: it is a program that must run with the
machine's own Python and a carried wheelhouse, without pytest, the project's .venv or a network;
like the benchmarks it reports measurements (ratios from one run) rather than pass/fail alone; and
the test that keeps it from rotting, its CPU run from a copy of what the device tool sends, lives
in tests/packaging/test_device_check.py.

- ``__main__`` — the outer process: the wheelhouse (built here on the CPU, read there), the install
  into a scratch folder and its preflight (``preflight.py``), then the inner process, the summary;
- ``wheelhouse`` — the carry (``make wheelhouse``); ``image_view`` — the CPU run's stand-in for the
  machine's image; ``image-packages.txt`` — what that image holds;
- ``inner`` — the steps, in the installed environment: ``serving`` (record, model, serve, down),
  ``bench_step``, ``placement`` (fit, --gpus, CUDA_VISIBLE_DEVICES), ``engine``; ``models`` builds
  the models, ``harness`` runs the installed ``modelserve`` and reads memory, ``summary`` writes
  ``device-check.json``.
"""

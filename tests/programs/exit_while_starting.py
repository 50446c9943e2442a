"""Prints a line and exits with a code before it ever listens (a server that crashes at start)."""

import sys
import time

code = int(sys.argv[2]) if len(sys.argv) > 2 else 456
print("loading weights...", flush=True)
time.sleep(0.3)  # a tiny bit of "work" so the launcher is already polling
print(f"FATAL: out of memory while loading (exiting with {code})", flush=True)
sys.exit(code)

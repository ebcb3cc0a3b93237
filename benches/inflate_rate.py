#!/usr/bin/env python3
"""Inflate rate of one core: a 6,000-row list whose rows differ only in their
ids (like `rollcall load`'s watcher rows), deflated at level 1 as a raw
stream, inflated again for SECS seconds (default 2), then deflated again for
SECS seconds. benches/README.md uses it for what a client must spend to inflate
the lists it receives, and for what deflating a whole list at every version
cost (zlib's level 1, as Python links it)."""
import json, sys, time, zlib
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2
def row(i):
    return json.dumps({"host": f"load-w-{i}", "instanceId": f"load-run-w-{i:08d}",
                       "ip": "127.0.0.1", "mode": "ui", "reason": "connect",
                       "text": f"Node: load-w-{i} (127.0.0.1) · mode ui", "version": "load",
                       "platform": "linux", "deviceFamily": "load", "ts": 1796550000000 + i},
                      separators=(",", ":"))
plain = ("[" + ",".join(row(i) for i in range(6000)) + "]").encode()
c = zlib.compressobj(1, zlib.DEFLATED, -15)
z = c.compress(plain) + c.flush(zlib.Z_SYNC_FLUSH)
start, n = time.perf_counter(), 0
while time.perf_counter() - start < secs:
    zlib.decompressobj(-15).decompress(z)
    n += len(plain)
el = time.perf_counter() - start
print(f"inflate: {n / el / 1e9:.2f} GB/s of output on one core "
      f"({len(plain) // 6000}-byte rows, deflated ÷{len(plain) / len(z):.0f})")
start, n = time.perf_counter(), 0
while time.perf_counter() - start < secs:
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    c.compress(plain)
    c.flush(zlib.Z_SYNC_FLUSH)
    n += len(plain)
el = time.perf_counter() - start
print(f"deflate: {n / el / 1e6:.0f} MB/s of input on one core at level 1")

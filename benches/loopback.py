#!/usr/bin/env python3
"""Loopback throughput: one sender of 1 MiB writes, one receiver, SECS seconds
(default 3). The physical bound benches/README.md compares fan-out with."""
import socket, sys, time, threading, os
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
got = [0]
def recv():
    c, _ = srv.accept()
    buf = bytearray(1 << 20); mv = memoryview(buf)
    while True:
        n = c.recv_into(mv)
        if not n: break
        got[0] += n
t = threading.Thread(target=recv); t.start()
s = socket.create_connection(("127.0.0.1", port))
data = os.urandom(1 << 20)
end = time.time() + secs; start = time.time(); sent = 0
while time.time() < end:
    s.sendall(data); sent += len(data)
s.close(); t.join()
el = time.time() - start
print(f"loopback: {got[0]/el/1e9:.2f} GB/s ({got[0]} bytes in {el:.2f} s)")

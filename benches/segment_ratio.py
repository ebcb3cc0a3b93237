#!/usr/bin/env python3
"""Deflate ratio of a realistic macOS fleet list, whole vs in per-chunk
segments (what the gateway sends since lists are compressed chunk by chunk)."""
import json, random, uuid, zlib, hashlib
random.seed(7)
def row(i):
    host = f"Johns-MacBook-Pro-{i}"
    ip = f"192.168.{(i>>8)&255}.{i&255}"
    e = {"instanceId": str(uuid.UUID(int=random.getrandbits(128))), "host": host, "ip": ip,
         "version": random.choice(["2026.11.2", "2026.11.1", "2026.10.4"]),
         "platform": random.choice(["macos 15.1", "macos 15.2", "macos 14.7"]),
         "deviceFamily": "Mac", "modelIdentifier": random.choice(["Mac15,6", "Mac14,3", "Mac16,1", "MacBookPro18,3"]),
         "mode": "ui", "lastInputSeconds": random.randint(0, 600), "reason": "periodic",
         "deviceId": hashlib.sha256(str(i).encode()).hexdigest(),
         "clientId": "openclaw-macos", "roles": ["operator"], "scopes": ["operator.read", "operator.write"],
         "text": f"Node: {host} ({ip}) · app 2026.11.2 · last input {random.randint(0,600)}s ago · mode ui · reason periodic",
         "ts": 1765000000000 + random.randint(0, 10**6)}
    return json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()
def deflate(b):
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return c.compress(b) + c.flush(zlib.Z_SYNC_FLUSH)
for n in (200, 2000, 12000):
    rows = [b"," + row(i) for i in range(n)]
    plain = b"".join(rows)
    whole = len(deflate(plain))
    out = [f"{n} rows, {len(plain)//n} B/row: whole list ÷{len(plain)/whole:.2f}"]
    for size in (33, 64):
        seg = sum(len(deflate(b"".join(rows[k:k+size]))) for k in range(0, n, size))
        out.append(f"{size}-row segments ÷{len(plain)/seg:.2f} ({seg/whole:.3f}× the bytes)")
    print("; ".join(out))

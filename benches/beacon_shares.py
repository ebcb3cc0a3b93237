#!/usr/bin/env python3
"""Shares of a served gateway's perf samples on the beacon path, by stage.

Reads `perf script` output (with call graphs) on stdin; each sample goes to
the first rule below that any frame of its stack matches, so a stage
includes what it calls (the allocator, memcpy). Samples whose leaf frame is
mimalloc's are also counted per stage. Used by benches/beacon_perf.sh.
"""
import sys, re, collections
RULES = [
    ("JSON: the frame parsed, and dropped (parse_request)",
     r"protocol::frame::parse_request|drop_in_place<simd_json|drop_in_place<rollcall::protocol::frame::Request"),
    ("params: parse_system_event", r"parse_system_event"),
    ("beacon text parse (presence::text::parse)", r"presence::text::parse"),
    ("beacon key and patch (presence::source::beacon*)", r"presence::source::beacon"),
    ("queue push + ack (try_push_acked)", r"try_push_acked|EventSender.*push"),
    ("claims::may_write", r"may_write"),
    ("beacon rows / node key", r"node_key|is_parsed_from|beacon_rows"),
    ("drop of params/patch", r"drop_in_place<rollcall::protocol|drop_in_place<rollcall::presence::entry::Patch"),
    ("system-event: rest", r"methods::system_event::call"),
    ("dispatch/handle_request: rest (reply, metrics)", r"handle_request|methods::dispatch"),
    ("writer thread: upsert (apply)", r"Store::upsert|Machine>::apply"),
    ("writer thread: publish", r"Machine>::publish|Store>::publish"),
    ("writer thread: acks + rest", r"engine::writer::run"),
    ("socket read (frame reader)", r"FrameReader|poll_fill|Heard"),
    ("socket write + write loop", r"frames::write_loop|FrameWriter|Drain"),
    ("connection task: rest", r"connection::serve|Session::run"),
]
ALLOC = re.compile(r"^(_?mi_|mi_)|mimalloc")
counts = collections.Counter(); alloc = collections.Counter(); total = 0
stack = []
def flush():
    global total
    if not stack: return
    total += 1
    cat = "other (runtime, scheduler, kernel)"
    for name, pat in RULES:
        if any(re.search(pat, f) for f in stack):
            cat = name; break
    counts[cat] += 1
    if ALLOC.search(stack[0]): alloc[cat] += 1
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush(); stack = []; continue
    if line.startswith((" ", "\t")):
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            stack.append(re.sub(r"\s*\(.*\)$", "", parts[1]))
flush()
print(f"samples: {total}")
for name, n in counts.most_common():
    print(f"{100*n/total:5.1f}%  {name}" + (f"  (allocator {100*alloc[name]/total:.1f}%)" if alloc[name] else ""))
print(f"allocator leaf frames, all: {100*sum(alloc.values())/total:.1f}%")

#!/usr/bin/env python3
"""Claude Code stream-json -> readable terminal lines (Dispatch spec section 7.3 step 7).

Usage:
    claude -p ... --output-format stream-json --verbose \\
        | python3 agent-filter.py [--summary FILE] > agent.log
    python3 agent-filter.py [--summary FILE] raw.jsonl ...

Reads one JSON object per line and prints display lines, flushing after every input line so a
log file can be followed while the agent runs. Python 3 standard library only. The output is
byte-for-byte the same as `dispatch agent-filter` (dispatch-core `agent_output`):

    system/init            [INIT] model=<model> tools=<n> [mcp_failed=<names>]
    system/api_retry       [RETRY] API error <status> (<error>); retry <n>/<max> in <ms> ms
    assistant text         the text verbatim, one display line per text line
    assistant tool_use     [TOOL] Name(k=v, k=v, k=v)   first 3 arguments, values cut to 80 chars
    user tool_result       [RESULT] <first 200 chars>...   ([ERROR] when is_error)
    result (success)       [COMPLETED] Cost: $0.42, Turns: 7
    result (error)         [FAILED] <reason>. Cost: $0.42, Turns: 7
    result with denials    [DENIED] <n> tool call(s) denied permission: <names>
    not JSON / not object  the line as it is
    anything else          nothing

With --summary FILE, the final `result` event's numbers (cost_usd, num_turns, model, is_error,
subtype, result_text, permission_denials, tokens_used, terminal_reason) are written to FILE as
JSON whenever a result event arrives.
"""

import argparse
import decimal
import json
import math
import os
import sys

TOOL_ARG_CHARS = 80
TOOL_ARGS_SHOWN = 3
TOOL_RESULT_CHARS = 200
U64_MAX = 2**64 - 1
# Unicode White_Space: what Rust's str::trim removes.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


class Obj:
    """A JSON object that keeps its keys in order, duplicates included (tool arguments show in
    the agent's order); `get` answers the last value of a repeated key."""

    def __init__(self, pairs):
        self.pairs = pairs

    def get(self, key):
        for k, v in reversed(self.pairs):
            if k == key:
                return v
        return None


def _reject_constant(name):
    raise ValueError(name)


def _number(text):
    n = int(text)
    # Outside i64/u64, serde_json reads integers as floats.
    return n if -(2**63) <= n <= U64_MAX else float(n)


def parse(line):
    return json.loads(line, object_pairs_hook=Obj, parse_constant=_reject_constant, parse_int=_number)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def as_str(v):
    return v if isinstance(v, str) else None


def as_f64(v):
    return float(v) if is_num(v) else None


def as_u64(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return v if 0 <= v <= U64_MAX else None
    if isinstance(v, float) and math.isfinite(v) and v >= 0 and v == int(v):
        return min(int(v), U64_MAX)
    return None


def get(v, key):
    return v.get(key) if isinstance(v, Obj) else None


def fmt_float(f):
    """A float the way serde_json prints it: shortest digits, `1e+30`, `1.5e-7`, `0.00001`, `100.0`."""
    if f == 0:
        return "-0.0" if math.copysign(1, f) < 0 else "0.0"
    _, digits, exp = decimal.Decimal(repr(abs(f))).normalize().as_tuple()
    digits = "".join(map(str, digits))
    n = len(digits)
    kk = n + exp  # f = 0.<digits> * 10^kk
    if n <= kk <= 16:
        out = digits + "0" * (kk - n) + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    else:
        exp = f"e+{kk - 1}" if kk > 0 else f"e{kk - 1}"
        out = (digits if n == 1 else f"{digits[0]}.{digits[1:]}") + exp
    return ("-" if f < 0 else "") + out


def to_json(v):
    """Compact JSON in the order the agent wrote it."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return fmt_float(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + to_json(x) for k, x in v.pairs) + "}"


def one_line(s, limit):
    """The first `limit` characters of `s` on one line (newlines shown as the two characters
    `\\n`, carriage returns dropped), and whether anything was cut."""
    head = s[:limit].replace("\r", "").replace("\n", "\\n")
    return head, len(s) > limit


def text_lines(text):
    """Rust's str::lines: split at \\n, drop one \\r before it, no final empty line."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def push_text(text, out):
    if text.strip(WHITESPACE):
        out.extend(line + "\n" for line in text_lines(text))


def tool_line(block):
    name = as_str(get(block, "name"))
    name = one_line(name, TOOL_ARG_CHARS)[0] if name is not None else "?"
    inp = get(block, "input")
    if isinstance(inp, Obj):
        shown = []
        for k, v in inp.pairs[:TOOL_ARGS_SHOWN]:
            raw = v if isinstance(v, str) else to_json(v)
            shown.append(one_line(k, 40)[0] + "=" + one_line(raw, TOOL_ARG_CHARS)[0])
        args = ", ".join(shown)
    elif inp is None:
        args = ""
    elif isinstance(inp, str):
        args = one_line(inp, TOOL_ARG_CHARS)[0]
    else:
        args = one_line(to_json(inp), TOOL_ARG_CHARS)[0]
    return f"[TOOL] {name}({args})\n"


def costliest_model(usage):
    if not isinstance(usage, Obj):
        return None
    best = None
    for name, u in usage.pairs:
        cost = as_f64(get(u, "costUSD"))
        cost = 0.0 if cost is None else cost
        if best is None or cost > best[1]:
            best = (name, cost)
    return best[0] if best else None


def failure_reason(s):
    subtype = s["subtype"]
    if not (s["is_error"] or (subtype or "").startswith("error")):
        return None
    if subtype == "error_max_turns":
        return "Stopped: maximum number of turns reached (error_max_turns)"
    if subtype == "error_max_budget_usd":
        return "Stopped: budget limit reached (error_max_budget_usd)"
    if subtype == "error_during_execution":
        return "Stopped: error during execution (error_during_execution)"
    if subtype and subtype.startswith("error"):
        return "Stopped: " + one_line(subtype, 80)[0]
    text = (s["result_text"] or "").strip(WHITESPACE)
    if not text:
        return "Agent reported an error"
    shown, cut = one_line(text, TOOL_RESULT_CHARS)
    return shown + ("..." if cut else "")


class StreamFilter:
    def __init__(self):
        self.model = None
        self.summary = None

    def push_line(self, line):
        """One line of the agent's stdout -> display lines, each ending with a newline."""
        line = line.rstrip("\r\n")
        if not line.strip(WHITESPACE):
            return []
        try:
            value = parse(line)
        except (ValueError, RecursionError):
            return [line + "\n"]
        if not isinstance(value, Obj):
            return [line + "\n"]
        out = []
        kind = get(value, "type")
        if kind == "system":
            self.system(value, out)
        elif kind == "assistant":
            self.assistant(value, out)
        elif kind == "user":
            user(value, out)
        elif kind == "result":
            self.result(value, out)
        return out

    def system(self, v, out):
        subtype = get(v, "subtype")
        if subtype == "init":
            model = as_str(get(v, "model"))
            if model is not None and self.model is None:
                self.model = model
            s = "[INIT]"
            if model is not None:
                s += " model=" + one_line(model, TOOL_ARG_CHARS)[0]
            tools = get(v, "tools")
            s += f" tools={len(tools) if isinstance(tools, list) else 0}"
            servers = get(v, "mcp_servers")
            failed = [
                one_line(as_str(get(m, "name")), 40)[0]
                for m in (servers if isinstance(servers, list) else [])
                if get(m, "status") != "connected" and as_str(get(m, "name")) is not None
            ]
            if failed:
                s += " mcp_failed=" + ",".join(failed)
            out.append(s + "\n")
        elif subtype == "api_retry":
            s = "[RETRY] API error"
            status = as_u64(get(v, "error_status"))
            if status is not None:
                s += f" {status}"
            error = as_str(get(v, "error"))
            if error is not None:
                s += f" ({one_line(error, TOOL_ARG_CHARS)[0]})"
            attempt = as_u64(get(v, "attempt"))
            if attempt is not None:
                s += f"; retry {attempt}"
                most = as_u64(get(v, "max_retries"))
                if most is not None:
                    s += f"/{most}"
            delay = as_f64(get(v, "retry_delay_ms"))
            if delay is not None:
                s += f" in {math.floor(max(delay, 0.0) + 0.5)} ms"
            out.append(s + "\n")

    def assistant(self, v, out):
        msg = get(v, "message")
        if msg is None:
            return
        model = as_str(get(msg, "model"))
        if model is not None and model != "<synthetic>":
            self.model = model
        content = get(msg, "content")
        if isinstance(content, str):
            push_text(content, out)
        elif isinstance(content, list):
            for b in content:
                kind = get(b, "type")
                if kind == "text":
                    text = as_str(get(b, "text"))
                    if text is not None:
                        push_text(text, out)
                elif kind in ("tool_use", "server_tool_use"):
                    out.append(tool_line(b))

    def result(self, v, out):
        usage = get(v, "usage")
        tokens = None
        if isinstance(usage, Obj):
            keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            counts = [as_u64(get(usage, k)) for k in keys]
            tokens = min(sum(c for c in counts if c is not None), U64_MAX)
        denials = get(v, "permission_denials")
        denials = denials if isinstance(denials, list) else []
        cost = as_f64(get(v, "total_cost_usd"))
        turns = as_u64(get(v, "num_turns"))
        is_error = get(v, "is_error")
        s = {
            "cost_usd": cost if cost is not None and math.isfinite(cost) and cost >= 0 else None,
            "num_turns": None if turns is None else min(turns, 2**32 - 1),
            "model": as_str(get(v, "model")) or costliest_model(get(v, "modelUsage")) or self.model,
            "is_error": is_error if isinstance(is_error, bool) else False,
            "subtype": as_str(get(v, "subtype")),
            "result_text": as_str(get(v, "result")),
            "permission_denials": len(denials),
            "tokens_used": tokens,
            "terminal_reason": as_str(get(v, "terminal_reason")),
        }
        numbers = "Cost: n/a" if s["cost_usd"] is None else f"Cost: ${s['cost_usd']:.2f}"
        if s["num_turns"] is not None:
            numbers += f", Turns: {s['num_turns']}"
        reason = failure_reason(s)
        out.append(f"[COMPLETED] {numbers}\n" if reason is None else f"[FAILED] {reason}. {numbers}\n")
        if denials:
            names = [as_str(get(d, "tool_name")) for d in denials]
            names = [one_line(n, 40)[0] for n in names if n is not None][:TOOL_ARGS_SHOWN]
            line = f"[DENIED] {len(denials)} tool call(s) denied permission"
            if names:
                line += ": " + ", ".join(names)
            out.append(line + "\n")
        self.summary = s


def user(v, out):
    content = get(get(v, "message"), "content")
    if not isinstance(content, list):
        return
    for b in content:
        if get(b, "type") != "tool_result":
            continue
        c = get(b, "content")
        if isinstance(c, str):
            text = c
        elif isinstance(c, list):
            parts = []
            for p in c:
                kind = get(p, "type")
                if kind == "text" and isinstance(get(p, "text"), str):
                    parts.append(get(p, "text"))
                elif kind == "image":
                    parts.append("[image]")
            text = "\n".join(parts)
        elif c is None:
            text = ""
        else:
            text = to_json(c)
        tag = "[ERROR]" if get(b, "is_error") is True else "[RESULT]"
        text = text.strip(WHITESPACE)
        if not text:
            out.append(f"{tag} (no output)\n")
            continue
        shown, cut = one_line(text, TOOL_RESULT_CHARS)
        out.append(f"{tag} {shown}{'...' if cut else ''}\n")


def write_summary(path, summary):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Render Claude Code stream-json output readably.")
    ap.add_argument("--summary", metavar="FILE", help="write the result event's numbers to FILE as JSON")
    ap.add_argument("files", nargs="*", help="stream-json files (default: standard input)")
    args = ap.parse_args(argv)
    out = sys.stdout.buffer
    f = StreamFilter()
    sources = [open(p, "rb") for p in args.files] if args.files else [sys.stdin.buffer]
    seen = None
    for src in sources:
        for raw in src:
            for line in f.push_line(raw.decode("utf-8", "replace")):
                out.write(line.encode("utf-8", "replace"))
            out.flush()
            if args.summary and f.summary is not None and f.summary is not seen:
                seen = f.summary
                write_summary(args.summary, f.summary)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)

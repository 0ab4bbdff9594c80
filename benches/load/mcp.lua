-- wrk script: MCP tool calls (JSON-RPC tools/call) to /api/mcp over streamable HTTP.
-- TOOL=get_issue (IDENT names the issue) or TOOL=search_issues (QUERY is the query).
local tool = os.getenv("TOOL") or "get_issue"
local key = os.getenv("KEY") or ""
local ident = os.getenv("IDENT") or "DISPATCH-1"
local query = os.getenv("QUERY") or "checkout"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local args
if tool == "search_issues" then
  args = '{"query":"' .. query .. '","limit":10}'
else
  args = '{"identifier":"' .. ident .. '"}'
end
local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool .. '","arguments":' .. args .. '}}'

function init(argv)
  tool_errors = 0
  req = wrk.format("POST", "/api/mcp", {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["Authorization"] = "Bearer " .. key,
    ["Mcp-Protocol-Version"] = "2025-11-25",
  }, body)
end

function request()
  return req
end

function response(status, headers, b)
  -- A tool error (isError true) or a protocol error is not a latency sample of a working call.
  if status ~= 200 or not string.find(b, '"isError":false', 1, true) then
    tool_errors = tool_errors + 1
  end
end

function done(summary, latency, requests)
  local errs = 0
  for _, t in ipairs(threads) do
    errs = errs + (t:get("tool_errors") or 0)
  end
  io.write(string.format("RESULT requests=%d duration_s=%.3f errors=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration / 1e6,
    errs + summary.errors.status + summary.errors.connect + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end

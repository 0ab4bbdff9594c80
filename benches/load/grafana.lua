-- wrk script: posts Grafana unified-alerting payloads to /api/loki/webhook.
-- MODE=dedup: every request the same fingerprint; MODE=new: a new fingerprint per request.
local mode = os.getenv("MODE") or "dedup"
local key = os.getenv("KEY") or ""
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

local function payload(msg)
  return '{"receiver":"dispatch","status":"firing","alerts":[{"status":"firing",' ..
    '"labels":{"alertname":"LokiErrors","source":"billing","feature":"charge-customer","level":"error","namespace":"prod"},' ..
    '"annotations":{"msg":"' .. msg .. '","summary":"errors in billing"},' ..
    '"startsAt":"2026-11-25T00:00:00Z","endsAt":"0001-01-01T00:00:00Z",' ..
    '"generatorURL":"http://grafana.local/alerting/grafana/abc/view","fingerprint":"abc123",' ..
    '"values":{"A":3}}],"groupLabels":{},"commonLabels":{},"commonAnnotations":{},' ..
    '"externalURL":"http://grafana.local/","version":"1","groupKey":"{}","truncatedAlerts":0,"orgId":1}'
end

function request()
  counter = counter + 1
  local msg
  if mode == "new" then
    -- Words, not numbers: normalisation would fold numbers into one fingerprint.
    local n = counter * 1000 + (thread_id or 0)
    local word = ""
    while n > 0 do
      word = word .. string.char(97 + (n % 26))
      n = math.floor(n / 26)
    end
    msg = "Card declined for plan " .. word
  else
    msg = "Card declined for customer cus_Nf8dJ2kLq9"
  end
  return wrk.format("POST", "/api/loki/webhook", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, payload(msg))
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.3f errors_status=%d errors_connect=%d errors_timeout=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end

-- POST /api/agent/cart/{cart}/items with a unique Idempotency-Key per request.
-- Env: KIFLY_KEY, KIFLY_CART, KIFLY_VARIANT; optional KIFLY_DELAY_MS to pace each connection.
local key, cart, variant = os.getenv("KIFLY_KEY"), os.getenv("KIFLY_CART"), os.getenv("KIFLY_VARIANT")
local delay_ms = tonumber(os.getenv("KIFLY_DELAY_MS") or "0")
local counter, thread_id = 0, 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id
end

function request()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("bench-%d-%d-%d", os.time(), thread_id, counter),
  }
  return wrk.format("POST", "/api/agent/cart/" .. cart .. "/items", headers,
    '{"variant_id":"' .. variant .. '","quantity":1}')
end

function delay()
  return delay_ms
end

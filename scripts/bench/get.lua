-- GET a path with the API key. Env: KIFLY_KEY (optional), KIFLY_DELAY_MS to pace each connection.
local key = os.getenv("KIFLY_KEY")
local delay_ms = tonumber(os.getenv("KIFLY_DELAY_MS") or "0")
if key then wrk.headers["Authorization"] = "Bearer " .. key end

function delay()
  return delay_ms
end

-- gather.lua: read the vectors of many keys in one atomic step (a consistent snapshot).
--
-- KEYS[1..n]  document hashes of one generation of a space (all share the space's hash tag)
-- KEYS[n+1]   the space's config hash (holds its state)
-- ARGV[1]     name of the hash field holding the raw vector ("vec")
-- ARGV[2]     expected byte length of one stored vector (dim * element size)
-- ARGV[3]     "raise": a missing key is an error; "skip": missing keys are reported
-- ARGV[4]     the state string the client built the key names from
--
-- Reply: { found, blob, blob, ... }: found is a string of n characters ("1" present, "0"
--        missing), followed by the present vectors' bytes in key order.
-- Errors: "RC_STALE" (the space's state changed, e.g. a rollback switched the live
--         generation: the client reloads the state and retries),
--         "RC_MISSING <i>" (key i, 1-based, is absent and mode is raise),
--         "RC_BADLEN <i> <bytes>" (stored vector i has the wrong byte length).
-- Cost: n HGETs, about 2.5 us of server time per 384-d key (table.concat of the blobs
--       measured 2-3x more, so the client joins them). No arithmetic runs here: means and
--       combinations of the snapshot are computed by the client (numpy), several times
--       cheaper for the server than arithmetic in Lua (docs/lua.md).
-- Atomic because: every vector is read in the same instant, so a concurrent writer can never
--       make a mean mix old and new versions of the inputs, and a rollback can never make it
--       mix two generations.

local field, nbytes, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = #KEYS - 1
if redis.call("HGET", KEYS[n + 1], "state") ~= ARGV[4] then return redis.error_reply("RC_STALE") end
local found, reply = {}, { "" }
for i = 1, n do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then
    if mode == "raise" then return redis.error_reply("RC_MISSING " .. i) end
    found[i] = "0"
  else
    if #blob ~= nbytes then return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob) end
    found[i] = "1"
    reply[#reply + 1] = blob
  end
end
reply[1] = table.concat(found)
return reply

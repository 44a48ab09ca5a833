-- e_gather_array.lua (benchmark alternative): read only, no arithmetic, like gather.lua.
-- HGET every vector and return the blobs as an array; the client joins them and computes
-- the mean. Compared with d_gather.lua it skips table.concat, which measured 2-3x the cost
-- of the HGETs themselves.
--
-- KEYS[1..n]  document hashes of one space (one hash tag)
-- ARGV[1]     hash field holding the raw vector ("vec")
-- ARGV[2]     dim: floats per vector
--
-- Reply: an array of the n vectors' raw float32 bytes, in key order.
-- Errors: "RC_MISSING <i>", "RC_BADLEN <i> <bytes>".

local field, nbytes = ARGV[1], tonumber(ARGV[2]) * 4
local blobs = {}
for i = 1, #KEYS do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then return redis.error_reply("RC_MISSING " .. i) end
  if #blob ~= nbytes then return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob) end
  blobs[i] = blob
end
return blobs

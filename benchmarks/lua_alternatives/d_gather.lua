-- d_gather.lua (benchmark alternative, not used by the library): read only, no arithmetic.
-- HGET every vector and return them concatenated (the work gather.lua does, without its
-- found-flags); the client computes the mean. Shows what reading alone costs the server.
--
-- KEYS[1..n]  document hashes of one space (one hash tag)
-- ARGV[1]     hash field holding the raw vector ("vec")
-- ARGV[2]     dim: floats per vector
--
-- Reply: the n vectors' raw float32 bytes concatenated in key order (n * dim * 4 bytes).
-- Errors: "RC_MISSING <i>", "RC_BADLEN <i> <bytes>".

local field, nbytes = ARGV[1], tonumber(ARGV[2]) * 4
local blobs = {}
for i = 1, #KEYS do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then return redis.error_reply("RC_MISSING " .. i) end
  if #blob ~= nbytes then return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob) end
  blobs[i] = blob
end
return table.concat(blobs)

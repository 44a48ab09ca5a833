-- a_chunked.lua (benchmark alternative, not used by the library): the plain mean of n stored
-- float32 vectors, each unpacked in chunks of at most 4096 values (one struct.unpack per chunk,
-- into a fresh table) and added into an accumulator table. This is the inner loop of
-- combine.lua and update_mean.lua with every coefficient 1.
--
-- KEYS[1..n]  document hashes of one space (one hash tag)
-- ARGV[1]     hash field holding the raw vector ("vec")
-- ARGV[2]     dim: floats per vector (any size: chunking stays below Lua's unpack limit)
--
-- Reply: the mean as dim little-endian float64 packed together.
-- Errors: "RC_MISSING <i>" (key i absent), "RC_BADLEN <i> <bytes>" (wrong byte length).

local field, dim = ARGV[1], tonumber(ARGV[2])
local n = #KEYS
local CHUNK = 4096

local acc = {}
for c = 1, dim do acc[c] = 0.0 end
for i = 1, n do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then return redis.error_reply("RC_MISSING " .. i) end
  if #blob ~= dim * 4 then return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob) end
  local j = 0
  while j < dim do
    local count = math.min(CHUNK, dim - j)
    local vals = { struct.unpack("<" .. string.rep("f", count), blob, j * 4 + 1) }
    for c = 1, count do acc[j + c] = acc[j + c] + vals[c] end
    j = j + count
  end
end

local out, j = {}, 0
while j < dim do
  local count = math.min(CHUNK, dim - j)
  for c = j + 1, j + count do acc[c] = acc[c] / n end
  out[#out + 1] = struct.pack("<" .. string.rep("d", count), unpack(acc, j + 1, j + count))
  j = j + count
end
return table.concat(out)
